"""Hard concrete gates: a differentiable relaxation of L0 regularisation (Louizos et al., 2018).

Each gate ``z`` in ``[0, 1]`` is drawn from the *hard concrete* distribution with location
parameter ``log_alpha`` (learned), temperature ``beta`` and stretch interval ``(gamma, zeta)``:

    u ~ U(eps, 1 - eps)
    s = sigmoid((log u - log(1 - u) + log_alpha) / beta)        # binary concrete sample
    s_bar = s * (zeta - gamma) + gamma                          # stretched to (gamma, zeta)
    z = min(1, max(0, s_bar))                                   # hard-clipped to [0, 1]

The stretch puts finite probability mass on exactly 0 and exactly 1, so sampled networks are
truly sparse, while ``z`` stays a differentiable function of ``log_alpha`` for a fixed ``u``
(reparameterisation trick). The probability that a gate is non-zero has the closed form

    P(z != 0) = sigmoid(log_alpha - beta * log(-gamma / zeta))

and the expected L0 norm of the gated tensor is the sum of these probabilities. At test time the
gate is deterministic:

    z_test = min(1, max(0, sigmoid(log_alpha) * (zeta - gamma) + gamma)).

Randomness is always controlled by the caller: ``sample`` takes the uniform noise ``u`` (or a
``torch.Generator`` to draw it from), so the same function works under ``torch.func.vmap`` and
``torch.func.grad`` (draw ``u`` outside the transform and pass it in).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from metasparse.sparsity.masks import weight_names

# Gates start mostly open: P(z != 0) = 0.99 at initialisation gives log_alpha ~ 3.0, where the
# test-time gate is exactly 1 and about 80 % of training samples are exactly 1. A network gated
# this way starts close to the dense network it replaces, so meta-learning begins from a working
# model and the L0 penalty decides what to close. The MSCN paper does not report its value.
DEFAULT_INITIAL_KEEP_PROB = 0.99
# Small jitter so that gates sharing a layer are not exactly tied at the start.
DEFAULT_INITIAL_LOG_ALPHA_STD = 0.01


@dataclass(frozen=True)
class HardConcrete:
    """The hard concrete distribution with the constants of Louizos et al. (2018).

    ``beta`` is the temperature, ``(gamma, zeta)`` the stretch interval (``gamma < 0 < 1 < zeta``),
    ``eps`` keeps the uniform noise away from 0 and 1 (where ``log u`` is infinite) and
    ``log_alpha_range`` is the interval that ``clamp`` keeps ``log_alpha`` in: outside it the gate
    is saturated for all practical purposes and an unbounded ``log_alpha`` would only grow.
    """

    beta: float = 2.0 / 3.0
    gamma: float = -0.1
    zeta: float = 1.1
    eps: float = 1e-6
    log_alpha_range: tuple[float, float] = (-10.0, 10.0)

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"temperature beta must be positive, got {self.beta}")
        if not (self.gamma < 0.0 and self.zeta > 1.0):
            raise ValueError(f"the stretch interval must contain [0, 1], got ({self.gamma}, {self.zeta})")
        if not 0.0 < self.eps < 0.5:
            raise ValueError(f"eps must lie in (0, 0.5), got {self.eps}")
        low, high = self.log_alpha_range
        if not low < high:
            raise ValueError(f"log_alpha_range must be an increasing pair, got {self.log_alpha_range}")

    # ------------------------------------------------------------------ closed forms

    @property
    def l0_shift(self) -> float:
        """``beta * log(-gamma / zeta)``: ``P(z != 0) = sigmoid(log_alpha - l0_shift)``."""
        return self.beta * math.log(-self.gamma / self.zeta)

    def prob_nonzero(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """Element-wise ``P(z != 0) = sigmoid(log_alpha - beta * log(-gamma / zeta))``.

        ``z != 0`` exactly when the stretched sample exceeds 0, i.e. ``s > -gamma / (zeta - gamma)``;
        the logistic noise ``log u - log(1 - u)`` makes that probability a sigmoid.
        """
        return torch.sigmoid(log_alpha - self.l0_shift)

    def expected_l0(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """Expected number of non-zero gates, ``sum sigmoid(log_alpha - beta * log(-gamma / zeta))``.

        This is the differentiable L0 penalty; returns a 0-dim tensor.
        """
        return self.prob_nonzero(log_alpha).sum()

    # ------------------------------------------------------------------ gates

    def uniform_noise(
        self,
        shape: Sequence[int] | torch.Size,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """``u ~ U(eps, 1 - eps)`` of the given shape, drawn from ``generator``.

        ``device`` defaults to the generator's device, so a CUDA generator draws on the GPU.
        """
        if device is None and generator is not None:
            device = generator.device
        u = torch.rand(tuple(shape), generator=generator, device=device, dtype=dtype)
        return u * (1.0 - 2.0 * self.eps) + self.eps

    def sample(
        self,
        log_alpha: torch.Tensor,
        u: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """A training-time gate sample ``z`` of the shape of ``log_alpha`` (reparameterised).

            s = sigmoid((log u - log(1 - u) + log_alpha) / beta)
            z = min(1, max(0, s * (zeta - gamma) + gamma))

        ``u`` (same shape as ``log_alpha``, or broadcastable to it) is the uniform noise; when it is
        ``None`` it is drawn from ``generator`` (this path cannot run inside ``vmap``: draw ``u``
        outside and pass it in). Gradients flow to ``log_alpha`` wherever ``0 < z < 1``.
        """
        if u is None:
            u = self.uniform_noise(log_alpha.shape, generator, device=log_alpha.device, dtype=log_alpha.dtype)
        logistic_noise = torch.log(u) - torch.log1p(-u)
        s = torch.sigmoid((logistic_noise + log_alpha) / self.beta)
        return self._stretch_and_clip(s)

    def deterministic(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """The test-time gate ``z = min(1, max(0, sigmoid(log_alpha) * (zeta - gamma) + gamma))``.

        ``log_alpha -> +inf`` gives exactly 1 and ``log_alpha -> -inf`` exactly 0; the gate is
        already saturated for ``|log_alpha| > log((1 - gamma) / (zeta - 1))`` (about 2.4).
        """
        return self._stretch_and_clip(torch.sigmoid(log_alpha))

    def _stretch_and_clip(self, s: torch.Tensor) -> torch.Tensor:
        return torch.clamp(s * (self.zeta - self.gamma) + self.gamma, 0.0, 1.0)

    # ------------------------------------------------------------------ parameters

    def clamp(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """``log_alpha`` clamped to ``log_alpha_range`` (out of place; see ``clamp_log_alphas_``)."""
        low, high = self.log_alpha_range
        return torch.clamp(log_alpha, low, high)

    def log_alpha_for_keep_prob(self, keep_prob: float) -> float:
        """The ``log_alpha`` at which ``P(z != 0) = keep_prob`` (inverse of ``prob_nonzero``)."""
        if not 0.0 < keep_prob < 1.0:
            raise ValueError(f"keep probability must lie in (0, 1), got {keep_prob}")
        return math.log(keep_prob) - math.log1p(-keep_prob) + self.l0_shift

    def init_log_alpha(
        self,
        shape: Sequence[int] | torch.Size,
        initial_keep_prob: float = DEFAULT_INITIAL_KEEP_PROB,
        mean: float | None = None,
        std: float = DEFAULT_INITIAL_LOG_ALPHA_STD,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Initial ``log_alpha ~ N(mean, std^2)`` of the given shape, clamped to ``log_alpha_range``.

        By default ``mean`` is chosen so that every gate is non-zero with probability
        ``initial_keep_prob`` (0.99: gates start mostly open, see ``DEFAULT_INITIAL_KEEP_PROB``);
        pass ``mean`` to set the location directly (Louizos et al. use
        ``mean = log(1 - p_drop) - log(p_drop)``, ``std = 0.01``). Both are hyper-parameters.
        """
        if std < 0:
            raise ValueError(f"std must be non-negative, got {std}")
        location = self.log_alpha_for_keep_prob(initial_keep_prob) if mean is None else float(mean)
        if device is None and generator is not None:
            device = generator.device
        noise = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
        return self.clamp(location + std * noise)


HARD_CONCRETE = HardConcrete()
"""The distribution with the paper constants (beta = 2/3, gamma = -0.1, zeta = 1.1)."""


# ---------------------------------------------------------------------------- gate dicts
#
# A gate dict maps parameter names to ``log_alpha`` tensors of the parameters' shapes (one gate
# per element); names that are absent are not gated.


def init_log_alphas(
    params: Mapping[str, torch.Tensor],
    names: Iterable[str] | None = None,
    hard_concrete: HardConcrete = HARD_CONCRETE,
    initial_keep_prob: float = DEFAULT_INITIAL_KEEP_PROB,
    mean: float | None = None,
    std: float = DEFAULT_INITIAL_LOG_ALPHA_STD,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Initial ``log_alpha`` tensors, one per gated parameter (``names``, default every ``*.weight``).

    Drawn one after the other in the order of ``names`` with ``HardConcrete.init_log_alpha``, on
    the parameters' device and dtype; make them leaves with ``requires_grad_()`` to learn them.
    """
    selected = weight_names(params) if names is None else list(names)
    unknown = [name for name in selected if name not in params]
    if unknown:
        raise KeyError(f"gates for parameters that do not exist: {unknown}")
    return {
        name: hard_concrete.init_log_alpha(
            params[name].shape,
            initial_keep_prob=initial_keep_prob,
            mean=mean,
            std=std,
            generator=generator,
            device=params[name].device,
            dtype=params[name].dtype,
        )
        for name in selected
    }


def gate_uniform_noise(
    log_alphas: Mapping[str, torch.Tensor],
    generator: torch.Generator | None = None,
    batch_shape: Sequence[int] = (),
    hard_concrete: HardConcrete = HARD_CONCRETE,
) -> dict[str, torch.Tensor]:
    """Noise ``u ~ U(eps, 1 - eps)`` for every gate, with optional leading ``batch_shape``.

    Draw it outside ``vmap`` and pass it to ``HardConcrete.sample`` inside: a leading batch
    dimension gives each signal its own gate sample.
    """
    return {
        name: hard_concrete.uniform_noise(
            (*batch_shape, *la.shape), generator, device=la.device, dtype=la.dtype
        )
        for name, la in log_alphas.items()
    }


def clamp_log_alphas_(
    log_alphas: Mapping[str, torch.Tensor], hard_concrete: HardConcrete = HARD_CONCRETE
) -> None:
    """Clamp learnable ``log_alpha`` leaves in place to ``hard_concrete.log_alpha_range``.

    Call after each optimiser step; in place and outside autograd so the optimiser keeps its state
    attached to the same tensors.
    """
    low, high = hard_concrete.log_alpha_range
    with torch.no_grad():
        for la in log_alphas.values():
            la.clamp_(low, high)
