import pytest
import torch

from metasparse.data.signals import grid_coordinates
from metasparse.meta import engine
from metasparse.meta.engine import MetaConfig, MetaLearner, adapted_losses, inner_loop, make_meta_gradient
from metasparse.meta.problems.base import ModulationProblem, WeightsProblem
from metasparse.meta.reference import naive_meta_gradient
from metasparse.nn.siren import ModelConfig, build_model


@pytest.fixture(autouse=True, params=["fast-path", "vmap"])
def meta_gradient_path(request, monkeypatch):
    """Every engine test runs on the hand-written SIREN path and on the torch.func engine."""
    if request.param == "vmap":
        monkeypatch.setattr(engine, "make_fast_meta_gradient", lambda *args, **kwargs: None)
    return request.param


def tiny_setup(dtype=torch.float32, meta_sgd=False, w0=30.0):
    model = build_model(ModelConfig(width=8, depth=2, w0=w0))
    problem = WeightsProblem(model, inner_lr=1e-2, meta_sgd=meta_sgd)
    meta = problem.init_meta(torch.Generator().manual_seed(0))
    meta = {g: {k: v.to(dtype) for k, v in d.items()} for g, d in meta.items()}
    coords = grid_coordinates((5, 5), dtype=dtype).reshape(-1, 2)
    targets = torch.rand(3, 25, 3, generator=torch.Generator().manual_seed(1), dtype=dtype)
    return problem, meta, coords, targets


def test_meta_gradient_matches_finite_differences():
    problem, meta, coords, targets = tiny_setup(torch.float64)
    grads, _ = make_meta_gradient(problem, MetaConfig(inner_steps=2))(meta, coords, targets, None)

    def objective(theta):
        return float(adapted_losses(problem, {"theta": theta}, coords, targets, None, 2, False).mean())

    eps = 1e-6
    for name in ("layers.0.weight", "layers.1.bias", "layers.2.weight"):
        for idx in [(0,), (1,)] if meta["theta"][name].dim() == 1 else [(0, 0), (1, 1)]:
            plus = {k: v.clone() for k, v in meta["theta"].items()}
            minus = {k: v.clone() for k, v in meta["theta"].items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            fd = (objective(plus) - objective(minus)) / (2 * eps)
            assert grads["theta"][name][idx].item() == pytest.approx(fd, rel=1e-4, abs=1e-8)


def test_batched_meta_gradient_equals_a_per_signal_loop():
    problem, meta, coords, targets = tiny_setup()
    grads, losses = make_meta_gradient(problem, MetaConfig(inner_steps=3))(meta, coords, targets, None)
    ref, ref_losses = naive_meta_gradient(problem, meta["theta"], coords, targets, 3, 1e-2)
    assert torch.allclose(losses, ref_losses, atol=1e-6)
    for k in ref:
        assert torch.allclose(grads["theta"][k], ref[k], atol=1e-6, rtol=1e-4)


def test_first_order_gradient_is_the_gradient_at_the_adapted_weights():
    problem, meta, coords, targets = tiny_setup(torch.float64)
    grads, _ = make_meta_gradient(problem, MetaConfig(algorithm="fomaml", inner_steps=2))(meta, coords, targets, None)
    expected = {k: torch.zeros_like(v) for k, v in meta["theta"].items()}
    for t in targets:
        fast = inner_loop(problem, meta, coords, t, None, 2, first_order=False)
        fast = {k: v.detach().requires_grad_(True) for k, v in fast.items()}
        loss = problem.loss(fast, meta, coords, t)
        for k, g in zip(fast, torch.autograd.grad(loss, list(fast.values()))):
            expected[k] += g / len(targets)
    second, _ = make_meta_gradient(problem, MetaConfig(inner_steps=2))(meta, coords, targets, None)
    for k, v in expected.items():
        assert torch.allclose(grads["theta"][k], v, atol=1e-10)
    assert any(not torch.allclose(second["theta"][k], v, atol=1e-6) for k, v in expected.items())


def test_meta_sgd_learning_rates_get_a_gradient_and_stay_clipped():
    problem, meta, coords, targets = tiny_setup(meta_sgd=True)
    assert all(((v >= 0.001) & (v <= 0.05)).all() for v in meta["lrs"].values())
    learner = MetaLearner(problem, MetaConfig(meta_sgd=True, outer_lr=10.0, lr_clip=(0.0, 0.02)), meta)
    grads, _ = learner.meta_gradient(coords, targets)
    assert all(g.abs().sum() > 0 for g in grads["lrs"].values())
    learner.step(coords, targets)
    assert all(((v >= 0) & (v <= 0.02)).all() for v in learner.meta["lrs"].values())


def test_reptile_moves_towards_the_adapted_weights():
    problem, meta, coords, targets = tiny_setup()
    fn = make_meta_gradient(problem, MetaConfig(algorithm="reptile", inner_steps=3))
    direction, _ = fn(meta, coords, targets, None)
    fast = [inner_loop(problem, meta, coords, t, None, 3, True) for t in targets]
    for k in meta["theta"]:
        mean_fast = torch.stack([f[k] for f in fast]).mean(0)
        assert torch.allclose(direction["theta"][k], meta["theta"][k] - mean_fast, atol=1e-6)


def test_outer_steps_reduce_the_post_adaptation_loss():
    problem, meta, coords, targets = tiny_setup()
    learner = MetaLearner(problem, MetaConfig(inner_steps=2, outer_lr=1e-3), meta)
    first = learner.step(coords, targets).mean().item()
    for _ in range(30):
        last = learner.step(coords, targets).mean().item()
    assert last < 0.7 * first


def test_masks_keep_pruned_weights_without_effect_or_gradient():
    model = build_model(ModelConfig(width=8, depth=2, w0=30))
    masks = {n: (torch.rand(model.dims_of(n)) > 0.5).float() for n in model.weight_names}
    problem = WeightsProblem(model, masks=masks)
    meta = problem.init_meta(torch.Generator().manual_seed(0))
    coords = grid_coordinates((4, 4)).reshape(-1, 2)
    targets = torch.rand(2, 16, 3)
    grads, _ = make_meta_gradient(problem, MetaConfig())(meta, coords, targets, None)
    for n, m in masks.items():
        assert (grads["theta"][n][m == 0] == 0).all()


def test_functa_modulations_adapt_only_the_latent():
    model = build_model(ModelConfig(width=8, depth=2, w0=30))
    problem = ModulationProblem(model, latent_dim=4)
    meta = problem.init_meta(torch.Generator().manual_seed(0))
    coords = grid_coordinates((4, 4)).reshape(-1, 2)
    targets = torch.rand(2, 16, 3)
    grads, losses = make_meta_gradient(problem, MetaConfig(inner_steps=3, meta_sgd=True))(meta, coords, targets, None)
    assert set(grads) == {"theta", "latent_map", "lrs"}
    assert grads["latent_map"]["weight"].abs().sum() > 0
    assert losses.shape == (2,)


@pytest.mark.slow
def test_compiled_meta_gradient_equals_eager():
    problem, meta, coords, targets = tiny_setup()
    eager, _ = make_meta_gradient(problem, MetaConfig(inner_steps=2))(meta, coords, targets, None)
    compiled, _ = make_meta_gradient(problem, MetaConfig(inner_steps=2, compile=True))(meta, coords, targets, None)
    for k in eager["theta"]:
        assert torch.allclose(compiled["theta"][k], eager["theta"][k], atol=1e-5, rtol=1e-3), k
