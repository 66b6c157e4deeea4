import torch

from metasparse.data.signals import grid_coordinates
from metasparse.meta.fit import FitConfig, fit_signals
from metasparse.metrics import psnr_from_mse
from metasparse.meta.problems.base import WeightsProblem
from metasparse.nn.siren import ModelConfig, build_model


def setup():
    model = build_model(ModelConfig(width=16, depth=2, w0=30))
    problem = WeightsProblem(model)
    meta = problem.init_meta(torch.Generator().manual_seed(0))
    coords = grid_coordinates((6, 6)).reshape(-1, 2)
    targets = torch.rand(5, 36, 3, generator=torch.Generator().manual_seed(2))
    return model, problem, meta, coords, targets


def test_psnr_definition():
    assert psnr_from_mse(torch.tensor(0.01)).item() == 20.0


def test_batched_fitting_equals_fitting_each_signal_alone():
    model, problem, meta, coords, targets = setup()
    cfg = FitConfig(steps=15, lr=1e-3, batch_size=5)
    batched = fit_signals(problem, meta, coords, targets, cfg)
    assert batched.psnr_per_step.shape == (16, 5)
    for i in range(5):
        params = {k: v.clone().requires_grad_(True) for k, v in meta["theta"].items()}
        opt = torch.optim.Adam(params.values(), lr=1e-3)
        for _ in range(15):
            opt.zero_grad()
            ((model.apply(params, coords) - targets[i]) ** 2).mean().backward()
            opt.step()
        for k, v in params.items():
            assert torch.allclose(batched.fast[k][i], v.detach(), atol=1e-5), k


def test_fitting_improves_psnr_and_chunks_do_not_change_results():
    _, problem, meta, coords, targets = setup()
    a = fit_signals(problem, meta, coords, targets, FitConfig(steps=30, lr=1e-3, batch_size=5))
    b = fit_signals(problem, meta, coords, targets, FitConfig(steps=30, lr=1e-3, batch_size=2))
    assert (a.final_psnr > a.psnr_per_step[0] + 1).all()
    assert torch.allclose(a.final_psnr, b.final_psnr, atol=1e-4)


def test_ema_of_iterates_and_inner_rule():
    _, problem, meta, coords, targets = setup()
    # After one step the average is d * start + (1 - d) * first iterate, exactly.
    plain = fit_signals(problem, meta, coords, targets, FitConfig(steps=1, lr=1e-3))
    ema = fit_signals(problem, meta, coords, targets, FitConfig(steps=1, lr=1e-3, ema_decay=0.9))
    for name, start in meta["theta"].items():
        expected = 0.9 * start.expand_as(plain.fast[name]) + 0.1 * plain.fast[name]
        assert torch.allclose(ema.fast[name], expected, atol=1e-7), name
        assert not torch.allclose(ema.fast[name], plain.fast[name]), name
    inner = fit_signals(problem, meta, coords, targets, FitConfig(steps=2, optimizer="inner"), keep_reconstructions=True)
    assert inner.reconstructions.shape == targets.shape
    assert inner.reconstructions.min() >= 0 and inner.reconstructions.max() <= 1
