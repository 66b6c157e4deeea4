"""The fast SIREN meta-gradient against the naive per-signal MAML loop (the oracle)."""

import pytest
import torch

from metasparse.data.signals import grid_coordinates
from metasparse.meta import fast_siren
from metasparse.meta.engine import MetaConfig, make_meta_gradient
from metasparse.meta.problems.base import ModulationProblem, WeightsProblem
from metasparse.meta.problems.gated import GatedModulationProblem, GatedUpdatesProblem
from metasparse.meta.reference import naive_meta_gradient, naive_problem_meta_gradient
from metasparse.nn.siren import ModelConfig, build_model


def relative_difference(a, b) -> float:
    num = sum(float(((a[k].double() - b[k].double()) ** 2).sum()) for k in b)
    den = sum(float((b[k].double() ** 2).sum()) for k in b)
    return (num / den) ** 0.5


def setup(problem, dtype, batch=3, size=5, seed=0):
    meta = problem.init_meta(torch.Generator().manual_seed(seed))
    meta = {g: {k: v.to(dtype) for k, v in d.items()} for g, d in meta.items()}
    coords = grid_coordinates((size, size), dtype=dtype).reshape(-1, 2)
    g = torch.Generator().manual_seed(seed + 1)
    targets = torch.rand(batch, size * size, 3, generator=g, dtype=dtype)
    return meta, coords, targets


def tiny_model(**kw):
    return build_model(ModelConfig(width=8, depth=2, w0=30.0, **kw))


def gated(dtype):
    problem = GatedModulationProblem(tiny_model(), l0_weight=0.01, gate_init_keep=0.7, target_count=12)
    problem.set_step(0, 16)
    return problem


def masked_weights(dtype):
    model = tiny_model()
    g = torch.Generator().manual_seed(3)
    masks = {n: (torch.rand(model.dims_of(n), generator=g) > 0.3).to(dtype) for n in model.weight_names}
    return WeightsProblem(model, inner_lr=1e-2, masks=masks)


PROBLEMS = {
    "weights": lambda dtype: WeightsProblem(tiny_model(), inner_lr=1e-2),
    "weights-metasgd": lambda dtype: WeightsProblem(tiny_model(), meta_sgd=True),
    "weights-masked": masked_weights,
    "weights-offset-w0first": lambda dtype: WeightsProblem(tiny_model(output_offset=0.5, w0_first=10.0)),
    "shifts": lambda dtype: ModulationProblem(tiny_model(), meta_sgd=True),
    "shifts-fixed-lr": lambda dtype: ModulationProblem(tiny_model(), meta_sgd=False, inner_lr=0.1),
    "latent": lambda dtype: ModulationProblem(tiny_model(), latent_dim=5, meta_sgd=True),
    "gated-shifts": gated,
}


@pytest.mark.parametrize("name", sorted(PROBLEMS))
@pytest.mark.parametrize("first_order", [False, True])
def test_matches_the_naive_loop_in_float64(name, first_order):
    problem = PROBLEMS[name](torch.float64)
    meta, coords, targets = setup(problem, torch.float64)
    noise = problem.sample_noise(meta, torch.Generator().manual_seed(7))
    noise = None if noise is None else {k: {n: v.double() for n, v in d.items()} for k, d in noise.items()}
    ref, ref_losses = naive_problem_meta_gradient(problem, meta, coords, targets, noise, 3, first_order)
    grads, losses = fast_siren.meta_gradient(problem, meta, coords, targets, noise, 3, first_order)
    assert torch.allclose(losses, ref_losses, rtol=1e-12, atol=1e-14)
    assert set(grads) == set(ref)
    for group in ref:
        assert set(grads[group]) == set(ref[group])
        assert relative_difference(grads[group], ref[group]) < 1e-10, group


@pytest.mark.parametrize("name", ["weights", "gated-shifts"])
def test_float32_within_1e5_of_the_naive_loop(name):
    problem = PROBLEMS[name](torch.float32)
    meta, coords, targets = setup(problem, torch.float32, batch=4, size=8)
    noise = problem.sample_noise(meta, torch.Generator().manual_seed(7))
    ref, _ = naive_problem_meta_gradient(problem, meta, coords, targets, noise, 2)
    grads, _ = fast_siren.meta_gradient(problem, meta, coords, targets, noise, 2)
    for group in ref:
        assert relative_difference(grads[group], ref[group]) < 1e-5, group


def test_weights_problem_matches_the_reference_loop():
    problem = PROBLEMS["weights"](torch.float64)
    meta, coords, targets = setup(problem, torch.float64)
    ref, _ = naive_meta_gradient(problem, meta["theta"], coords, targets, 2, 1e-2)
    grads, _ = fast_siren.meta_gradient(problem, meta, coords, targets, None, 2)
    assert relative_difference(grads["theta"], ref) < 1e-10


def test_chunks_sum_to_the_whole_batch():
    problem = PROBLEMS["gated-shifts"](torch.float64)
    meta, coords, targets = setup(problem, torch.float64, batch=5)
    noise = problem.sample_noise(meta, torch.Generator().manual_seed(7))
    whole, whole_losses = fast_siren.meta_gradient(problem, meta, coords, targets, noise, 2)
    chunked, chunked_losses = fast_siren.meta_gradient(problem, meta, coords, targets, noise, 2, chunk_size=2)
    assert torch.allclose(whole_losses, chunked_losses, rtol=1e-12)
    for group in whole:
        assert relative_difference(chunked[group], whole[group]) < 1e-12


def test_drop_in_for_the_engine():
    problem = PROBLEMS["latent"](torch.float32)
    meta, coords, targets = setup(problem, torch.float32)
    config = MetaConfig(inner_steps=2, meta_sgd=True)
    fast = fast_siren.make_fast_meta_gradient(problem, config)
    engine = make_meta_gradient(problem, config)
    grads, losses = fast(meta, coords, targets, None)
    ref, ref_losses = engine(meta, coords, targets, None)
    assert torch.allclose(losses, ref_losses, atol=1e-6)
    for group in ref:
        assert relative_difference(grads[group], ref[group]) < 1e-5


def test_unsupported_problems_and_algorithms_fall_back():
    assert fast_siren.make_fast_meta_gradient(GatedUpdatesProblem(tiny_model()), MetaConfig()) is None
    ffn = WeightsProblem(build_model(ModelConfig(kind="ffn", width=8, depth=2)))
    assert fast_siren.make_fast_meta_gradient(ffn, MetaConfig()) is None
    siren = WeightsProblem(tiny_model())
    assert fast_siren.make_fast_meta_gradient(siren, MetaConfig(algorithm="reptile")) is None
    assert fast_siren.make_fast_meta_gradient(siren, MetaConfig()) is not None


@pytest.mark.parametrize("name", ["weights-masked", "gated-shifts"])
def test_the_formulation_compile_traces_matches_too(name, monkeypatch):
    # Compiling takes tens of seconds; the traced function itself is checked uncompiled.
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    problem = PROBLEMS[name](torch.float64)
    meta, coords, targets = setup(problem, torch.float64)
    noise = problem.sample_noise(meta, torch.Generator().manual_seed(7))
    ref, _ = naive_problem_meta_gradient(problem, meta, coords, targets, noise, 2)
    grads, _ = fast_siren.FastMetaGradient(problem, 2, compile=True)(meta, coords, targets, noise)
    for group in ref:
        assert relative_difference(grads[group], ref[group]) < 1e-10, group


def test_other_input_and_output_sizes():
    model = build_model(ModelConfig(in_dim=3, out_dim=1, width=8, depth=3, w0=15.0))
    problem = WeightsProblem(model, meta_sgd=True)
    meta = problem.init_meta(torch.Generator().manual_seed(0))
    meta = {g: {k: v.double() for k, v in d.items()} for g, d in meta.items()}
    coords = grid_coordinates((3, 3, 3), dtype=torch.float64).reshape(-1, 3)
    targets = torch.rand(2, 27, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref, _ = naive_problem_meta_gradient(problem, meta, coords, targets, None, 2)
    grads, _ = fast_siren.meta_gradient(problem, meta, coords, targets, None, 2)
    for group in ref:
        assert relative_difference(grads[group], ref[group]) < 1e-10, group
