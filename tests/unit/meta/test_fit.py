import torch
from torch.func import vmap

from metasparse.data.signals import grid_coordinates
from metasparse.meta.fit import FitConfig, fit_batched, fit_signals, signal_copies
from metasparse.meta.problems.base import WeightsProblem
from metasparse.metrics import psnr_from_mse
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
    inner_rule = FitConfig(steps=2, optimizer="inner")
    inner = fit_signals(problem, meta, coords, targets, inner_rule, keep_reconstructions=True)
    assert inner.reconstructions.shape == targets.shape
    assert inner.reconstructions.min() >= 0 and inner.reconstructions.max() <= 1


def test_fit_batched_phases_replace_masks_between_phases_only():
    model, _, meta, coords, targets = setup()
    batched = vmap(lambda p, m, t: ((model.apply(p, coords, masks=m or None) - t) ** 2).mean())
    name = model.weight_names[1]
    calls = []

    def prune_first_row(params, masks, phase):
        calls.append(phase)
        assert phase == 0 or torch.all(masks[name][:, 0] == 0)  # the masks the last call returned
        new = {n: m.clone() for n, m in masks.items()}
        new[name][:, 0] = 0
        return new

    ones = {n: torch.ones(5, *meta["theta"][n].shape) for n in model.weight_names}
    params = signal_copies(meta["theta"], 5)
    fit = fit_batched(
        batched, params, targets, [3, 2, 4], "adam", 1e-3, masks=ones, after_phase=prune_first_row
    )
    assert calls == [0, 1]  # not after the last phase
    assert len(fit.losses) == 9 and fit.losses[0].shape == (5,)
    assert torch.all(fit.masks[name][:, 0] == 0) and torch.all(fit.masks[name][:, 1:] == 1)

    # Phases without a hook are one fit: the same numbers as a single phase of the same length.
    split, whole = signal_copies(meta["theta"], 5), signal_copies(meta["theta"], 5)
    fit_batched(batched, split, targets, [4, 5], "adam", 1e-3, masks={})
    fit_batched(batched, whole, targets, [9], "adam", 1e-3, masks={})
    assert all(torch.equal(split[k], whole[k]) for k in split)
