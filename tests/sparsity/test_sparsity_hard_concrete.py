"""Hard concrete gates against their closed forms (Louizos et al., 2018)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.func import grad, vmap

from metasparse.sparsity.hard_concrete import HARD_CONCRETE, HardConcrete

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


def test_prob_one_matches_monte_carlo_rate_of_open_samples():
    z = _monte_carlo_gates(HARD_CONCRETE, LOG_ALPHAS, seed=1)
    rate = (z == 1).double().mean(dim=0)
    assert _within_standard_errors(rate, HARD_CONCRETE.prob_one(LOG_ALPHAS).double(), NUM_SAMPLES)


def test_expected_l0_equals_monte_carlo_count_of_nonzero_gates():
    z = _monte_carlo_gates(HARD_CONCRETE, LOG_ALPHAS, seed=2)
    counts = (z > 0).double().sum(dim=1)
    expected = HARD_CONCRETE.expected_l0(LOG_ALPHAS)
    assert expected.dim() == 0
    assert expected == pytest.approx(float(HARD_CONCRETE.prob_nonzero(LOG_ALPHAS).sum()))
    standard_error = counts.std() / math.sqrt(NUM_SAMPLES)
    assert abs(float(counts.mean()) - float(expected)) < 5 * float(standard_error)


def test_expected_l0_formula():
    expected = torch.sigmoid(LOG_ALPHAS - (2 / 3) * math.log(0.1 / 1.1)).sum()
    assert torch.allclose(HARD_CONCRETE.expected_l0(LOG_ALPHAS), expected)


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


def test_deterministic_gate_formula_between_the_limits():
    la = torch.linspace(-2.0, 2.0, 9)
    expected = torch.clamp(torch.sigmoid(la) * 1.2 - 0.1, 0.0, 1.0)
    assert torch.allclose(HARD_CONCRETE.deterministic(la), expected)
    assert float(HARD_CONCRETE.deterministic(torch.tensor(0.0))) == pytest.approx(0.5)


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
