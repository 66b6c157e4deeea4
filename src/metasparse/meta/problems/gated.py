"""Meta-learned sparse compression networks (MSCN): hard-concrete gated meta-problems.

Three meta-problems extend the ones of ``metasparse.meta.problems.base`` with learned L0 gates
(Louizos et al. 2018). In all of them the gate locations ``log_alpha`` are meta-learned in the
outer loop together with θ (and MetaSGD's learned inner lrs); they live under the top-level meta
key ``"log_alpha"`` (``GATE_META_KEY``), so ``MetaConfig.group_lr_multipliers`` can give them
their own outer learning rate: ``gate_lr_multiplier`` (``ProblemConfig.gate_lr_multiplier`` in a run),
which an explicit ``(("log_alpha", x),)`` entry overrides.

- ``mscn-updates`` (``GatedUpdatesProblem``, Eq. 9, unstructured sparse gradients): the network
  stays dense, the inner update is gated,

      θ_{k+1} = θ_k - lr ⊙ z ⊙ ∇_θ L(θ_k),

  so the per-signal change ``δ = θ_K - θ_0`` is zero wherever ``z = 0`` and a signal costs
  ``||δ||_0``. To keep ``δ`` sparse under any test-time optimiser (Adam, SGD), the forward uses
  ``θ_0 + 1[z > 0] ⊙ (θ - θ_0)``: a value no-op inside the gated inner loop (δ is already zero
  where ``z = 0``) that gives closed entries a zero gradient at test time.
- ``mscn-weights`` (``GatedWeightsProblem``, Appendix C, fully sparse): the gate multiplies the
  weights themselves in the forward, ``f(x; θ ⊙ z)``, and the inner loop adapts θ.
- ``mscn-modulations`` (``GatedModulationProblem``, Eq. 10, structured sparse modulations):
  ``h_l = sin(w0 (W_l h_{l-1} + b_l + z_l ⊙ m_l))``; the shifts ``m`` are adapted per signal, one
  gate per modulation is shared by all signals (the compression pattern), and a signal costs the
  number of open gates.

Gates. Training: one hard-concrete sample ``z`` per outer step, shared by the signals of the batch
(``sample_noise`` draws the uniform noise; ``z`` is computed from ``log_alpha`` inside the
meta-gradient, so the reparameterised gradient reaches ``log_alpha`` through the inner loop).
Test: the deterministic gate ``min(1, max(0, sigmoid(log_alpha) (ζ - γ) + γ))``.

Regulariser (normalisation): ``l0_weight * E[||z||_0] / num_gates``, i.e. λ times the expected
*fraction* of open gates, so λ does not depend on the network size (each gate counts once).

Target count. ``target_count`` sets a hard budget: only the ``target_count`` gates with the
largest ``log_alpha`` stay open (``budget_gates``), so exactly that many entries can be non-zero.
The same top-k cut is applied to the sampled gates during meta-training (the ranking is re-read at
every step), so the network is trained under the budget it is tested with. A gate outside the cut
gets no gradient from the loss, so with the cut from the first step the kept set is mostly the
initial ranking; ``budget_anneal_steps`` lets the training budget shrink from every gate to the
target over that many outer steps (``k_t = k + (n - k) (1 - t / T)^3``), so that gates compete on
the loss first (the trainer's ``on_outer_step`` calls ``set_step``). ``train_budgets`` instead cycles the training
budget through several counts, always the top-k gates (nested dropout, Rippel et al. 2014, on
gates): every nested prefix of the ranking is trained, so one network serves every rate of a codec,
and the loss orders the gates (a gate that helps at small budgets rises to the front). The paper reaches a count through λ; ``search_l0_weight`` is a geometric bisection over
λ (each evaluation is a user-supplied training run) to get close to the target before the top-k
cut makes it exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, ClassVar

import torch

from metasparse.errors import ConfigError
from metasparse.meta.problems.base import PROBLEMS, ModulationProblem, ProblemConfig, WeightsProblem
from metasparse.nn.siren import CoordinateNetwork, Params
from metasparse.sparsity.hard_concrete import (
    HARD_CONCRETE,
    HardConcrete,
    clamp_log_alphas_,
    gate_uniform_noise,
    init_log_alphas,
)
from metasparse.sparsity.masks import count_nonzero

if TYPE_CHECKING:
    from metasparse.meta.engine import MetaConfig

GATE_META_KEY = "log_alpha"

__all__ = [
    "GATE_META_KEY",
    "GatedModulationProblem",
    "GatedUpdatesProblem",
    "GatedWeightsProblem",
    "budget_gates",
    "open_gate_count",
    "search_l0_weight",
]


# --------------------------------------------------------------------------------- helpers


def budget_gates(gates: Mapping[str, torch.Tensor], log_alpha: Mapping[str, torch.Tensor], k: int):
    """Keep exactly ``k`` gates open: the ``k`` largest ``log_alpha`` over all gated tensors.

    Kept gates keep their value ``gates[name]`` where it is positive and are fully open (1)
    where the deterministic gate was closed; all others are set to exactly 0.
    """
    names = list(log_alpha)
    flat = torch.cat([log_alpha[n].reshape(-1) for n in names])
    if not 0 <= k <= flat.numel():
        raise ValueError(f"budget {k} outside [0, {flat.numel()}] gates")
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.topk(flat, k).indices] = True
    out, start = {}, 0
    for n in names:
        size = log_alpha[n].numel()
        kept = keep[start:start + size].reshape(log_alpha[n].shape)
        z = gates[n]
        out[n] = torch.where(kept, torch.where(z > 0, z, torch.ones_like(z)), torch.zeros_like(z))
        start += size
    return out


def open_gate_count(gates: Mapping[str, torch.Tensor]) -> int:
    """Number of non-zero gates (exact, tolerance 0)."""
    return count_nonzero(gates.values())


def search_l0_weight(
    count_for: Callable[[float], int],
    target: int,
    low: float = 1e-4,
    high: float = 10.0,
    iterations: int = 8,
) -> tuple[float, int]:
    """Geometric bisection of λ so that ``count_for(λ)`` (open gates after training with λ) is
    close to ``target`` while not below it (the budget cut then removes the excess).

    ``count_for`` is assumed non-increasing in λ. Returns the largest tried λ whose count is
    ``>= target`` (or the smallest λ tried when none reaches it) and that count.
    """
    if not 0 < low < high:
        raise ValueError("need 0 < low < high")
    best: tuple[float, int] | None = None
    fallback: tuple[float, int] | None = None
    lo, hi = low, high
    for _ in range(iterations):
        lam = math.sqrt(lo * hi)
        count = count_for(lam)
        if fallback is None or lam < fallback[0]:
            fallback = (lam, count)
        if count >= target:
            if best is None or lam > best[0]:
                best = (lam, count)
            if count == target:
                break
            lo = lam
        else:
            hi = lam
    return best if best is not None else fallback


def _count_nonzero(values: list[torch.Tensor], per_signal_dims: list[int]) -> torch.Tensor:
    """Exact count of non-zeros; tensors with a leading signal dim give a (N,) result."""
    if any(v.dim() > d for v, d in zip(values, per_signal_dims)):
        return count_nonzero(values, per_signal=True).to(torch.get_default_dtype())
    return torch.tensor(float(count_nonzero(values)))


class _GateMixin:
    """Shared gate machinery; ``self.gated_names`` lists the gated entries of ``meta["log_alpha"]``."""

    hard_concrete: HardConcrete = HARD_CONCRETE
    l0_weight: float = 0.0
    target_count: int | None = None
    budget_anneal_steps: int = 0
    train_budgets: tuple[int, ...] = ()
    gate_lr_multiplier: float = 1.0
    _training_budget: int | None = None

    def _set_gate_settings(self, l0_weight: float, gate_init_keep: float, target_count: int | None,
                           hard_concrete: HardConcrete, gate_lr_multiplier: float) -> None:
        """The gate settings every gated problem takes (the constructors differ in the rest)."""
        self.l0_weight = l0_weight
        self.gate_init_keep = gate_init_keep
        self.target_count = target_count
        self.hard_concrete = hard_concrete
        self.gate_lr_multiplier = gate_lr_multiplier

    def on_outer_step(self, step: int, meta) -> None:
        self.set_step(step, self.num_gates(meta))

    def lr_multipliers(self) -> dict[str, float]:
        return {GATE_META_KEY: float(self.gate_lr_multiplier)}

    def set_step(self, step: int, num_gates: int) -> None:
        """The training budget at outer step ``step`` (see the module docstring)."""
        if self.train_budgets:
            self._training_budget = self.train_budgets[step % len(self.train_budgets)]
            return
        k, steps = self.target_count, self.budget_anneal_steps
        if k is None or steps <= 0 or step >= steps:
            self._training_budget = k
        else:
            self._training_budget = k + round((num_gates - k) * (1 - step / steps) ** 3)

    def _new_log_alpha(self, shapes: Mapping[str, torch.Tensor], generator, device, keep: float) -> Params:
        # Drawn on the CPU from the CPU init generator, then moved: reproducible on any device.
        cpu = {n: torch.empty(v.shape, dtype=v.dtype) for n, v in shapes.items()}
        la = init_log_alphas(cpu, names=list(cpu), hard_concrete=self.hard_concrete,
                             initial_keep_prob=keep, generator=generator)
        return {n: v.to(device=device if device is not None else shapes[n].device) for n, v in la.items()}

    def sample_noise(self, meta, generator):
        return {"u": gate_uniform_noise(meta[GATE_META_KEY], generator, hard_concrete=self.hard_concrete)}

    def eval_noise(self, meta):
        return {"z": self.test_gates(meta)}

    def test_gates(self, meta) -> Params:
        """Deterministic gates, cut to ``target_count`` when a budget is set."""
        la = {k: v.detach() for k, v in meta[GATE_META_KEY].items()}
        z = {k: self.hard_concrete.deterministic(v) for k, v in la.items()}
        if self.target_count is not None:
            z = budget_gates(z, la, self.target_count)
        return z

    def gates(self, meta, noise) -> Params:
        """Gate values for this call: a sample (training), the given gates (test) or deterministic."""
        if noise is not None and "z" in noise:
            return noise["z"]
        la = meta[GATE_META_KEY]
        if noise is not None and "u" in noise:
            z = {k: self.hard_concrete.sample(v, noise["u"][k]) for k, v in la.items()}
            budget = self.target_count if self._training_budget is None else self._training_budget
            if budget is not None:
                # Train under the test-time budget: only the current top-k gates may open, so the
                # network learns to work with exactly k entries; λ keeps pushing the others down.
                ones = {k: torch.ones_like(v) for k, v in la.items()}
                keep = budget_gates(ones, {k: v.detach() for k, v in la.items()}, budget)
                z = {k: z[k] * keep[k] for k in z}
            return z
        return {k: self.hard_concrete.deterministic(v) for k, v in la.items()}

    def num_gates(self, meta) -> int:
        return sum(v.numel() for v in meta[GATE_META_KEY].values())

    def regulariser(self, meta, noise=None):
        """``l0_weight * E[||z||_0] / num_gates`` (λ times the expected fraction of open gates)."""
        if not self.l0_weight:
            return 0.0
        la = meta[GATE_META_KEY]
        expected = sum(self.hard_concrete.expected_l0(v) for v in la.values())
        return self.l0_weight * expected / self.num_gates(meta)

    def expected_l0(self, meta) -> torch.Tensor:
        return sum(self.hard_concrete.expected_l0(v.detach()) for v in meta[GATE_META_KEY].values())

    def project(self, meta) -> None:
        """Keep ``log_alpha`` inside ``hard_concrete.log_alpha_range`` (in place, after each step)."""
        clamp_log_alphas_(meta[GATE_META_KEY], self.hard_concrete)


# --------------------------------------------------------------------------------- problems


class _GatedWeightsBase(_GateMixin, WeightsProblem):
    """θ (and MetaSGD lrs) as in ``WeightsProblem``, plus one gate per weight (and bias)."""

    # The gates already decide which entries a signal uses; Algorithm 1's pruning is not applied on top.
    supports_pruning: ClassVar[bool] = False

    def __init__(
        self,
        model: CoordinateNetwork,
        inner_lr: float = 1e-2,
        meta_sgd: bool = True,
        meta_sgd_init: tuple[float, float] = (0.001, 0.05),
        lr_clip: tuple[float, float] = (0.0, 1.0),
        masks: Params | None = None,
        l0_weight: float = 0.0,
        gate_init_keep: float = 0.9,
        gate_biases: bool = False,
        target_count: int | None = None,
        hard_concrete: HardConcrete = HARD_CONCRETE,
        gate_lr_multiplier: float = 1.0,
    ):
        super().__init__(model, inner_lr, meta_sgd, meta_sgd_init, lr_clip, masks)
        self.gate_biases = gate_biases
        self._set_gate_settings(l0_weight, gate_init_keep, target_count, hard_concrete, gate_lr_multiplier)

    @property
    def gated_names(self) -> list[str]:
        return self.model.weight_names + (self.model.bias_names if self.gate_biases else [])

    def init_meta(self, generator, device=None):
        meta = super().init_meta(generator, device)
        theta = meta["theta"]
        meta[GATE_META_KEY] = self._new_log_alpha(
            {n: theta[n] for n in self.gated_names}, generator, device, self.gate_init_keep
        )
        return meta


class GatedUpdatesProblem(_GatedWeightsBase):
    """MSCN Eq. 9: ``θ_{k+1} = θ_k - lr ⊙ z ⊙ ∇L(θ_k)``; a signal costs ``||θ_K - θ_0||_0``.

    ``meta_sgd`` (default True) learns per-entry inner lrs; ``meta_sgd=False`` uses the fixed
    ``inner_lr`` (for comparisons with plain MAML). Weights are gated, biases too with
    ``gate_biases`` (ungated biases are adapted densely and counted in the cost).
    """

    def step_size(self, meta, noise=None):
        step = super().step_size(meta, noise)
        z = self.gates(meta, noise)
        return {k: (step[k] * z[k] if k in z else step[k]) for k in step}

    def predict(self, fast, meta, coords, noise=None):
        # θ_0 + 1[z > 0] ⊙ (θ - θ_0): identical values in the gated inner loop, and zero gradient
        # for closed entries under any test-time optimiser, so δ stays exactly sparse.
        z = self.gates(meta, noise)
        theta0 = meta["theta"]
        params = {}
        for k, v in fast.items():
            if k in z:
                open_ = (z[k] > 0).to(v.dtype).detach()
                params[k] = theta0[k] + open_ * (v - theta0[k])
            else:
                params[k] = v
        return self.model.apply(params, coords, masks=self.masks)

    def per_signal_cost(self, fast, meta):
        """Exact ``||θ_K - θ_0||_0`` (tolerance 0); a leading signal dim in ``fast`` gives (N,)."""
        theta0 = meta["theta"]
        names = list(fast)
        return _count_nonzero([fast[n] - theta0[n] for n in names], [theta0[n].dim() for n in names])


class GatedWeightsProblem(_GatedWeightsBase):
    """MSCN Appendix C (fully sparse): the forward uses ``θ ⊙ z`` and the inner loop adapts θ.

    A signal costs the number of non-zero effective weights ``θ_K ⊙ z`` at test time (biases not
    counted, as in ``WeightsProblem``).
    """

    def effective(self, fast, meta, noise=None) -> Params:
        z = self.gates(meta, noise)
        out = {}
        for k, v in fast.items():
            w = v * z[k] if k in z else v
            if self.masks is not None and k in self.masks:
                w = w * self.masks[k]
            out[k] = w
        return out

    def predict(self, fast, meta, coords, noise=None):
        return self.model.apply(self.effective(fast, meta, noise), coords)

    def per_signal_cost(self, fast, meta):
        eff = self.effective(fast, meta, self.eval_noise(meta))
        names = self.model.weight_names
        return _count_nonzero([eff[n] for n in names], [meta["theta"][n].dim() for n in names])


class GatedModulationProblem(_GateMixin, ModulationProblem):
    """MSCN Eq. 10: shift modulations ``z ⊙ m`` with one meta-learned gate per modulation.

    The per-signal shifts ``m`` (fast state ``code``, zeros at the start of each fit) are adapted
    in the inner loop; the gate pattern is shared by all signals, so a signal costs the number of
    open gates (the values of the open modulations).
    """

    sends_sparse_code = True

    def __init__(
        self,
        model: CoordinateNetwork,
        inner_lr: float = 1e-2,
        meta_sgd: bool = True,
        meta_sgd_init: tuple[float, float] = (0.005, 0.1),
        lr_clip: tuple[float, float] = (0.0, 1.0),
        l0_weight: float = 0.0,
        gate_init_keep: float = 0.9,
        target_count: int | None = None,
        hard_concrete: HardConcrete = HARD_CONCRETE,
        gate_lr_multiplier: float = 1.0,
    ):
        super().__init__(model, None, inner_lr, meta_sgd, meta_sgd_init, lr_clip)
        self._set_gate_settings(l0_weight, gate_init_keep, target_count, hard_concrete, gate_lr_multiplier)

    def init_meta(self, generator, device=None):
        meta = super().init_meta(generator, device)
        ref = meta["theta"]["layers.0.bias"]
        shape = {"code": torch.empty(self.model.num_modulations, dtype=ref.dtype, device=ref.device)}
        meta[GATE_META_KEY] = self._new_log_alpha(shape, generator, device, self.gate_init_keep)
        return meta

    def shifts(self, fast, meta, noise=None):
        return self.gates(meta, noise)["code"] * fast["code"]

    def kept_modulations(self, meta) -> torch.Tensor:
        """Indices of the modulations sent at test time (open test gates, budget applied)."""
        return torch.nonzero(self.test_gates(meta)["code"] != 0).flatten()

    def per_signal_cost(self, fast, meta):
        n = open_gate_count(self.test_gates(meta))
        code = fast["code"]
        if code.dim() > 1:
            return torch.full((code.shape[0],), float(n))
        return torch.tensor(float(n))


# --------------------------------------------------------------------------------- registry


def _check(p: ProblemConfig) -> None:
    if p.adapt_gates_inner:
        raise ConfigError(f"problem.adapt_gates_inner is not supported by {p.kind}")
    if p.latent_dim:
        raise ConfigError(f"{p.kind} adapts the shifts directly; problem.latent_dim must be unset")


@PROBLEMS.register("mscn-updates")
def _build_updates(p: ProblemConfig, m: MetaConfig, network: CoordinateNetwork, masks) -> GatedUpdatesProblem:
    _check(p)
    return _annealed(GatedUpdatesProblem(
        network, m.inner_lr, m.meta_sgd, tuple(m.meta_sgd_init), tuple(m.lr_clip), masks,
        p.l0_weight, p.gate_init_keep, p.gate_biases, p.target_count, gate_lr_multiplier=p.gate_lr_multiplier,
    ), p)


@PROBLEMS.register("mscn-weights")
def _build_weights(p: ProblemConfig, m: MetaConfig, network: CoordinateNetwork, masks) -> GatedWeightsProblem:
    _check(p)
    return _annealed(GatedWeightsProblem(
        network, m.inner_lr, m.meta_sgd, tuple(m.meta_sgd_init), tuple(m.lr_clip), masks,
        p.l0_weight, p.gate_init_keep, p.gate_biases, p.target_count, gate_lr_multiplier=p.gate_lr_multiplier,
    ), p)


@PROBLEMS.register("mscn-modulations")
def _build_modulations(p: ProblemConfig, m: MetaConfig, network: CoordinateNetwork,
                       masks) -> GatedModulationProblem:
    _check(p)
    if network.num_modulations == 0:
        raise ConfigError("mscn-modulations needs a SIREN (shift modulations)")
    return _annealed(GatedModulationProblem(
        network, m.inner_lr, m.meta_sgd, tuple(m.meta_sgd_init), tuple(m.lr_clip),
        p.l0_weight, p.gate_init_keep, p.target_count, gate_lr_multiplier=p.gate_lr_multiplier,
    ), p)


def _annealed(problem, p: ProblemConfig):
    if p.budget_anneal_steps < 0:
        raise ConfigError("problem.budget_anneal_steps must be >= 0")
    problem.budget_anneal_steps = int(p.budget_anneal_steps)
    budgets = tuple(int(b) for b in p.train_budgets)
    total = problem.num_gates(problem.init_meta(torch.Generator().manual_seed(0))) if budgets else 0
    if any(b < 1 for b in budgets):
        raise ConfigError(f"problem.train_budgets must be positive, got {list(budgets)}")
    # A smaller network than the budgets were written for: a budget above the gate count means all.
    problem.train_budgets = tuple(min(b, total) for b in budgets)
    return problem
