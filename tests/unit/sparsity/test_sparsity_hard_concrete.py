"""Hard concrete gates against their closed forms (Louizos et al., 2018)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.func import grad, vmap

from metasparse.sparsity.hard_concrete import (
    HARD_CONCRETE,
    HardConcrete,
    clamp_log_alphas_,
    gate_uniform_noise,
    init_log_alphas,
)

LOG_ALPHAS = torch.tensor([-4.0, -2.0, -1.0, 0.0, 0.5, 1.0, 2.0, 4.0])
NUM_SAMPLES = 100_000


def _monte_carlo_gates(hc: HardConcrete, log_alpha: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = hc.uniform_noise((NUM_SAMPLES, *log_alpha.shape), g)
    return hc.sample(log_alpha.expand(NUM_SAMPLES, *log_alpha.shape), u)


def _within_standard_errors(rate: torch.Tensor, p: torch.Tensor, n: int, k: float = 5.0) -> bool:
    standard_error = torch.sqrt(p * (1 - p) / n).clamp_min(1.0 / n)
    return bool(torch.all((rate - p).abs() <= k * standard_error))


def test_paper_constants_are_the_defaults():
    assert (HARD_CONCRETE.beta, HARD_CONCRETE.gamma, HARD_CONCRETE.zeta) == (2 / 3, -0.1, 1.1)
    assert HARD_CONCRETE.l0_shift == pytest.approx((2 / 3) * math.log(0.1 / 1.1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        HARD_CONCRETE.beta = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs", [{"beta": 0.0}, {"gamma": 0.1}, {"zeta": 0.9}, {"eps": 0.0}, {"log_alpha_range": (1.0, -1.0)}]
)
def test_invalid_constants_are_rejected(kwargs):
    with pytest.raises(ValueError):
        HardConcrete(**kwargs)


def test_prob_nonzero_matches_monte_carlo_rate_of_nonzero_samples():
    z = _monte_carlo_gates(HARD_CONCRETE, LOG_ALPHAS)
    rate = (z > 0).double().mean(dim=0)
    assert _within_standard_errors(rate, HARD_CONCRETE.prob_nonzero(LOG_ALPHAS).double(), NUM_SAMPLES)


def test_expected_l0_equals_monte_carlo_count_of_nonzero_gates():
    z = _monte_carlo_gates(HARD_CONCRETE, LOG_ALPHAS, seed=2)
    counts = (z > 0).double().sum(dim=1)
    expected = HARD_CONCRETE.expected_l0(LOG_ALPHAS)
    assert expected.dim() == 0
    assert expected == pytest.approx(float(HARD_CONCRETE.prob_nonzero(LOG_ALPHAS).sum()))
    standard_error = counts.std() / math.sqrt(NUM_SAMPLES)
    assert abs(float(counts.mean()) - float(expected)) < 5 * float(standard_error)


def test_expected_l0_counts_half_a_gate_at_the_shift():
    # At log_alpha = l0_shift a gate is non-zero with probability exactly 1/2.
    assert float(HARD_CONCRETE.expected_l0(torch.tensor([HARD_CONCRETE.l0_shift] * 4))) == pytest.approx(2.0)


def test_samples_are_hard_gates_with_exact_zeros_and_ones():
    z = _monte_carlo_gates(HARD_CONCRETE, torch.tensor([0.0]), seed=3)
    assert torch.all((z >= 0) & (z <= 1))
    assert bool((z == 0).any()) and bool((z == 1).any()) and bool(((z > 0) & (z < 1)).any())


def test_sample_is_reproducible_from_a_generator():
    la = torch.zeros(50)
    a = HARD_CONCRETE.sample(la, generator=torch.Generator().manual_seed(7))
    b = HARD_CONCRETE.sample(la, generator=torch.Generator().manual_seed(7))
    c = HARD_CONCRETE.sample(la, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_uniform_noise_stays_inside_eps_interval():
    hc = HardConcrete(eps=0.1)
    u = hc.uniform_noise((10_000,), torch.Generator().manual_seed(0))
    assert float(u.min()) >= 0.1 and float(u.max()) <= 0.9


def test_deterministic_gate_limits():
    la = torch.tensor([-math.inf, -1e4, -2.5, 2.5, 1e4, math.inf])
    assert torch.equal(HARD_CONCRETE.deterministic(la), torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]))


def test_deterministic_gate_between_the_limits():
    # sigmoid(log_alpha) * 1.2 - 0.1 reaches 1 at log 11 and 0 at -log 11 (sigmoid = 11/12, 1/12).
    assert float(HARD_CONCRETE.deterministic(torch.tensor(0.0))) == pytest.approx(0.5)
    assert float(HARD_CONCRETE.deterministic(torch.tensor(math.log(11.0) + 1e-4))) == 1.0
    assert float(HARD_CONCRETE.deterministic(torch.tensor(-math.log(11.0) - 1e-4))) == 0.0
    assert 0.99 < float(HARD_CONCRETE.deterministic(torch.tensor(math.log(11.0) - 0.01))) < 1.0
    gates = HARD_CONCRETE.deterministic(torch.linspace(-2.0, 2.0, 41))
    assert torch.all(gates[1:] > gates[:-1])  # strictly increasing between the limits


def test_gradient_flows_to_log_alpha_through_samples():
    la = torch.zeros(1000, requires_grad=True)
    u = HARD_CONCRETE.uniform_noise(la.shape, torch.Generator().manual_seed(0))
    z = HARD_CONCRETE.sample(la, u)
    (g,) = torch.autograd.grad(z.sum(), la)
    inside = (z > 0) & (z < 1)
    assert bool(inside.any())
    assert torch.all(g[inside] > 0)  # a larger log_alpha opens the gate further
    assert torch.all(g[~inside] == 0)  # clipped samples carry no gradient


def test_torch_func_grad_matches_autograd():
    la = torch.linspace(-3.0, 3.0, 64)
    u = HARD_CONCRETE.uniform_noise(la.shape, torch.Generator().manual_seed(0))
    weights = torch.linspace(0.5, 2.0, 64)

    def loss(log_alpha: torch.Tensor) -> torch.Tensor:
        penalty = 0.1 * HARD_CONCRETE.expected_l0(log_alpha)
        return (HARD_CONCRETE.sample(log_alpha, u) * weights).sum() + penalty

    leaf = la.clone().requires_grad_()
    (expected,) = torch.autograd.grad(loss(leaf), leaf)
    assert torch.allclose(grad(loss)(la), expected)


def test_expected_l0_gradient_is_the_sigmoid_derivative():
    la = torch.linspace(-3.0, 3.0, 13)
    p = torch.sigmoid(la - HARD_CONCRETE.l0_shift)
    assert torch.allclose(grad(HARD_CONCRETE.expected_l0)(la), p * (1 - p))


def test_sample_works_under_vmap_with_per_example_noise():
    la = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    u = HARD_CONCRETE.uniform_noise(la.shape, torch.Generator().manual_seed(1))
    batched = vmap(HARD_CONCRETE.sample)(la, u)
    looped = torch.stack([HARD_CONCRETE.sample(la[i], u[i]) for i in range(5)])
    assert torch.allclose(batched, looped)


def test_vmap_of_grad_matches_a_loop():
    la = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    u = HARD_CONCRETE.uniform_noise(la.shape, torch.Generator().manual_seed(1))

    def gated_energy(log_alpha: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return (HARD_CONCRETE.sample(log_alpha, noise) ** 2).sum()

    batched = vmap(grad(gated_energy))(la, u)
    looped = torch.stack([grad(gated_energy)(la[i], u[i]) for i in range(4)])
    assert torch.allclose(batched, looped)


def test_init_log_alpha_starts_gates_mostly_open():
    la = HARD_CONCRETE.init_log_alpha((256, 256), generator=torch.Generator().manual_seed(0))
    assert la.shape == (256, 256)
    assert float(HARD_CONCRETE.prob_nonzero(la).mean()) == pytest.approx(0.99, abs=1e-3)
    assert torch.all(HARD_CONCRETE.deterministic(la) == 1)
    assert float(la.std()) == pytest.approx(0.01, rel=0.05)


def test_init_log_alpha_with_explicit_mean_and_keep_prob():
    la = HARD_CONCRETE.init_log_alpha((1000,), mean=-1.5, std=0.0)
    assert torch.all(la == -1.5)
    la = HARD_CONCRETE.init_log_alpha((10,), initial_keep_prob=0.5, std=0.0)
    assert torch.allclose(HARD_CONCRETE.prob_nonzero(la), torch.full((10,), 0.5))
    big = HARD_CONCRETE.init_log_alpha((10,), mean=50.0, std=0.0)
    assert torch.all(big == HARD_CONCRETE.log_alpha_range[1])
    with pytest.raises(ValueError):
        HARD_CONCRETE.init_log_alpha((3,), initial_keep_prob=1.0)


def test_log_alpha_for_keep_prob_inverts_prob_nonzero():
    for p in (0.01, 0.3, 0.9, 0.999):
        la = torch.tensor(HARD_CONCRETE.log_alpha_for_keep_prob(p), dtype=torch.float64)
        assert float(HARD_CONCRETE.prob_nonzero(la)) == pytest.approx(p, rel=1e-9)


def test_clamp_keeps_log_alpha_in_range():
    hc = HardConcrete(log_alpha_range=(-3.0, 5.0))
    clamped = hc.clamp(torch.tensor([-100.0, 0.0, 100.0]))
    assert torch.equal(clamped, torch.tensor([-3.0, 0.0, 5.0]))


def test_clamp_log_alphas_in_place_keeps_the_same_leaves():
    hc = HardConcrete(log_alpha_range=(-2.0, 2.0))
    leaf = torch.tensor([-5.0, 0.0, 5.0], requires_grad=True)
    log_alphas = {"layers.0.weight": leaf}
    clamp_log_alphas_(log_alphas, hc)
    assert log_alphas["layers.0.weight"] is leaf and leaf.requires_grad
    assert torch.equal(leaf.detach(), torch.tensor([-2.0, 0.0, 2.0]))


# Values drawn for seed 0 by the gate functions as they were before they moved here: trained
# gated models depend on this draw order (weights in dict order, one gate per element).
GOLDEN_LOG_ALPHAS = {
    "a.weight": [[3.011932849884033, 2.99358868598938, 2.9747350215911865],
                 [3.0022072792053223, 2.985677719116211, 2.982537031173706]],
    "b.weight": [[3.000556468963623, 3.0049030780792236]],
}
GOLDEN_NOISE = {
    "a.weight": [[[0.49625658988952637, 0.7682212591171265, 0.08847825229167938],
                  [0.13203121721744537, 0.3074232041835785, 0.6340783834457397]],
                 [[0.4900934398174286, 0.8964439630508423, 0.45562806725502014],
                  [0.6323060393333435, 0.34889376163482666, 0.40171751379966736]]],
    "b.weight": [[[0.02232670970261097, 0.168859601020813]], [[0.2938888669013977, 0.5185217261314392]]],
}
GOLDEN_HALF_OPEN = {
    "a.bias": [-1.5831868648529053, -1.6015311479568481],
    "a.weight": [[-1.620384693145752, -1.5929125547409058, -1.6094419956207275],
                 [-1.612582802772522, -1.594563364982605, -1.5902165174484253]],
}


def test_gate_initialisation_and_noise_keep_their_seed_0_values():
    params = {"a.weight": torch.empty(2, 3), "a.bias": torch.empty(2), "b.weight": torch.empty(1, 2)}
    log_alphas = init_log_alphas(params, generator=torch.Generator().manual_seed(0))
    assert {k: v.tolist() for k, v in log_alphas.items()} == GOLDEN_LOG_ALPHAS
    noise = gate_uniform_noise(log_alphas, torch.Generator().manual_seed(0), batch_shape=(2,))
    assert {k: v.tolist() for k, v in noise.items()} == GOLDEN_NOISE
    half_open = init_log_alphas(params, names=["a.bias", "a.weight"], initial_keep_prob=0.5,
                                generator=torch.Generator().manual_seed(0))
    assert {k: v.tolist() for k, v in half_open.items()} == GOLDEN_HALF_OPEN
    with pytest.raises(KeyError):
        init_log_alphas(params, names=["c.weight"])
