"""One gate mechanism for weights, updates, modulations and activations (MSCN, Section 3.2)."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, vmap

from metasparse.sparsity.gates import (
    GateSpec,
    clamp_log_alphas_,
    deterministic_gates,
    expand,
    expected_l0_total,
    gate_activations,
    gate_uniform_noise,
    group_sizes,
    init_log_alphas,
    resolve_gate_specs,
    sample_gates,
)
from metasparse.sparsity.hard_concrete import HARD_CONCRETE, HardConcrete


@pytest.mark.parametrize(
    ("granularity", "weight_gate", "compact", "bias_gate"),
    [
        ("unstructured", (8, 5), (8, 5), (8,)),
        ("rows", (8, 1), (8,), (8,)),
        ("neurons", (8, 1), (8,), (8,)),
        ("columns", (1, 5), (5,), None),
        ("tensor", (1, 1), (), (1,)),
    ],
)
def test_gate_shapes(granularity, weight_gate, compact, bias_gate):
    spec = GateSpec(granularity)
    assert spec.gate_shape((8, 5)) == weight_gate
    assert spec.compact_gate_shape((8, 5)) == compact
    assert spec.group_size((8, 5)) == 40 // (weight_gate[0] * weight_gate[1])
    if bias_gate is None:
        with pytest.raises(ValueError):
            spec.gate_shape((8,))
    else:
        assert spec.gate_shape((8,)) == bias_gate


def test_unknown_granularity_is_rejected():
    with pytest.raises(ValueError):
        GateSpec("channels")  # type: ignore[arg-type]


def test_init_gates_weights_only_by_default(make_params):
    params = make_params((2, 16, 3))
    log_alphas = init_log_alphas(params, GateSpec("rows"), generator=torch.Generator().manual_seed(0))
    assert {n: tuple(la.shape) for n, la in log_alphas.items()} == {
        "layers.0.weight": (16, 1),
        "layers.1.weight": (3, 1),
    }
    with_biases = init_log_alphas(params, GateSpec("unstructured"), gate_biases=True)
    assert set(with_biases) == set(params)
    assert with_biases["layers.0.bias"].shape == (16,)


def test_init_with_a_spec_per_parameter(make_params):
    params = make_params((2, 16, 3))
    specs = {"layers.0.weight": GateSpec("columns"), "layers.1.bias": GateSpec("tensor")}
    log_alphas = init_log_alphas(params, specs, mean=1.0, std=0.0)
    assert log_alphas["layers.0.weight"].shape == (1, 2)
    assert log_alphas["layers.1.bias"].shape == (1,)
    assert all(bool(torch.all(la == 1.0)) for la in log_alphas.values())
    with pytest.raises(KeyError):
        resolve_gate_specs(params, {"missing.weight": GateSpec()})


def test_expand_broadcasts_group_gates_in_both_layouts():
    rows = torch.tensor([0.0, 0.5, 1.0])
    expanded = expand(rows, GateSpec("rows"), (3, 4))
    assert expanded.shape == (3, 4)
    assert torch.equal(expanded, rows[:, None].repeat(1, 4))
    assert torch.equal(expand(rows[:, None], GateSpec("rows"), (3, 4)), expanded)
    columns = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert torch.equal(expand(columns, GateSpec("columns"), (3, 4)), columns[None, :].repeat(3, 1))
    assert torch.equal(expand(torch.tensor(0.25), GateSpec("tensor"), (3, 4)), torch.full((3, 4), 0.25))
    with pytest.raises(ValueError):
        expand(rows, GateSpec("columns"), (3, 4))


def test_sampled_gates_are_shaped_like_the_parameters_with_one_sample_per_group(make_params):
    params = make_params((2, 16, 3))
    log_alphas = init_log_alphas(params, GateSpec("rows"), mean=0.0, std=0.0)
    z = sample_gates(log_alphas, params, generator=torch.Generator().manual_seed(0))
    for name, gate in z.items():
        assert gate.shape == params[name].shape
        assert torch.all(gate == gate[:, :1])  # constant along each row
    compact = sample_gates(log_alphas, generator=torch.Generator().manual_seed(0))
    assert compact["layers.0.weight"].shape == (16, 1)
    assert torch.equal(compact["layers.0.weight"].expand(16, 2), z["layers.0.weight"])


def test_deterministic_gates_start_open_and_close_for_very_negative_log_alpha(make_params):
    params = make_params((2, 16, 3))
    open_gates = deterministic_gates(init_log_alphas(params), params)
    assert all(bool(torch.all(z == 1)) for z in open_gates.values())
    closed = deterministic_gates({"layers.0.weight": torch.full((16, 2), -20.0)}, params)
    assert torch.all(closed["layers.0.weight"] == 0)


def test_expected_l0_weighted_by_group_size(make_params):
    params = make_params((2, 256, 256, 3))
    log_alphas = {"layers.1.weight": torch.full((256, 1), 8.0)}  # 256 row gates, nearly surely open
    unweighted = expected_l0_total(log_alphas, weighted_by_group_size=False)
    weighted = expected_l0_total(log_alphas, params, weighted_by_group_size=True)
    assert float(unweighted) == pytest.approx(256.0, rel=1e-3)
    assert float(weighted) == pytest.approx(256.0 * 256.0, rel=1e-3)
    assert torch.allclose(weighted, 256 * HARD_CONCRETE.expected_l0(log_alphas["layers.1.weight"]))
    with pytest.raises(ValueError):
        expected_l0_total(log_alphas)  # weighting needs the shapes


def test_expected_l0_total_sums_over_parameters_and_is_differentiable(make_params):
    params = make_params((2, 16, 3))
    log_alphas = init_log_alphas(params, GateSpec("unstructured"), gate_biases=True, mean=0.0, std=0.1)
    total = expected_l0_total(log_alphas, params)
    assert torch.allclose(total, sum(HARD_CONCRETE.expected_l0(la) for la in log_alphas.values()))
    gradients = grad(lambda las: expected_l0_total(las, params))(log_alphas)
    assert all(bool(torch.all(g > 0)) for g in gradients.values())


def test_group_sizes_ignore_a_leading_batch_dimension(make_params):
    batched = make_params((2, 16, 3), batch=5)
    log_alphas = {"layers.0.weight": torch.zeros(16, 1), "layers.1.weight": torch.zeros(1, 16)}
    assert group_sizes(log_alphas, batched) == {"layers.0.weight": 2, "layers.1.weight": 3}
    with pytest.raises(ValueError):
        group_sizes({"layers.0.weight": torch.zeros(7, 1)}, batched)


def _gated_mlp(params: dict[str, torch.Tensor], z: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    h = torch.sin(x @ (params["layers.0.weight"] * z["layers.0.weight"]).T + params["layers.0.bias"])
    return h @ (params["layers.1.weight"] * z["layers.1.weight"]).T + params["layers.1.bias"]


def test_gradients_reach_log_alpha_through_a_gated_forward(make_params):
    params = make_params((2, 16, 3))
    log_alphas = init_log_alphas(params, GateSpec("unstructured"), mean=0.0, std=0.0)
    noise = gate_uniform_noise(log_alphas, torch.Generator().manual_seed(0))
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))

    def loss(las: dict[str, torch.Tensor]) -> torch.Tensor:
        return _gated_mlp(params, sample_gates(las, params, noise=noise), x).pow(2).mean()

    gradients = grad(loss)(log_alphas)
    assert all(bool(g.abs().sum() > 0) for g in gradients.values())


def test_per_signal_gate_samples_under_vmap_match_a_loop(make_params):
    params = make_params((2, 16, 3))
    log_alphas = init_log_alphas(params, GateSpec("rows"), mean=0.0, std=0.5)
    noise = gate_uniform_noise(log_alphas, torch.Generator().manual_seed(0), batch_shape=(4,))
    x = torch.randn(4, 8, 2, generator=torch.Generator().manual_seed(1))

    def fit_output(signal_noise: dict[str, torch.Tensor], coords: torch.Tensor) -> torch.Tensor:
        return _gated_mlp(params, sample_gates(log_alphas, params, noise=signal_noise), coords)

    batched = vmap(fit_output)(noise, x)
    looped = torch.stack([fit_output({n: u[i] for n, u in noise.items()}, x[i]) for i in range(4)])
    assert torch.allclose(batched, looped, atol=1e-6)


def test_gated_inner_update_leaves_closed_entries_unchanged(make_params):
    """Eq. 9: theta_1 = theta_0 - lr * z * grad; the change delta is zero wherever z is."""
    params = make_params((2, 16, 3))
    log_alphas = init_log_alphas(
        params, GateSpec("unstructured"), mean=-1.0, std=1.0, generator=torch.Generator().manual_seed(0)
    )
    z = sample_gates(log_alphas, params, generator=torch.Generator().manual_seed(1))
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(2))
    ones = {n: torch.ones_like(p) for n, p in params.items()}
    gradients = grad(lambda p: _gated_mlp(p, ones, x).pow(2).mean())(params)
    adapted = {n: p - 0.1 * z.get(n, torch.ones_like(p)) * gradients[n] for n, p in params.items()}
    for name, gate in z.items():
        delta = adapted[name] - params[name]
        assert torch.all(delta[gate == 0] == 0)
        assert int(torch.count_nonzero(delta)) <= int(torch.count_nonzero(gate))


def test_gate_activations_silences_closed_units():
    h = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    z = torch.tensor([1.0, 0.0, 0.5, 1.0])
    gated = gate_activations(h, z)
    assert torch.all(gated[:, 1] == 0)
    assert torch.allclose(gated[:, 2], 0.5 * h[:, 2])
    with pytest.raises(ValueError):
        gate_activations(h, torch.ones(3))


def test_clamp_log_alphas_in_place_keeps_the_same_leaves():
    hc = HardConcrete(log_alpha_range=(-2.0, 2.0))
    leaf = torch.tensor([-5.0, 0.0, 5.0], requires_grad=True)
    log_alphas = {"layers.0.weight": leaf}
    clamp_log_alphas_(log_alphas, hc)
    assert log_alphas["layers.0.weight"] is leaf and leaf.requires_grad
    assert torch.equal(leaf.detach(), torch.tensor([-2.0, 0.0, 2.0]))
