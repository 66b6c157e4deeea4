"""The meta-learning engine: a batched inner loop and the outer update.

MAML (Finn et al. 2017), full second order by default:

    φ_i = θ - α ⊙ ∇_θ L_i(θ)            (K times, per signal i, all signals at once via vmap)
    θ  ← Adam(θ, ∇_θ mean_i L_i(φ_i))

The whole meta-gradient is one ``torch.func.grad`` of a ``vmap`` over signals, so there is no
Python loop over signals and the function can be handed to ``torch.compile``. ``first_order``
drops the second-order terms (FOMAML: the inner gradients are treated as constants, so learned
inner learning rates still get a gradient). ``reptile`` replaces the meta-gradient by θ - mean φ_i
(Nichol et al. 2018).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch.func import grad, vmap

from metasparse.meta.fast_siren import make_fast_meta_gradient
from metasparse.meta.problems.base import MetaProblem

Meta = dict[str, dict[str, torch.Tensor]]


@dataclass(frozen=True)
class MetaConfig:
    """Meta-learning settings (JSON-serialisable)."""

    algorithm: Literal["maml", "fomaml", "reptile"] = "maml"
    inner_steps: int = 2
    inner_lr: float = 1e-2
    meta_sgd: bool = False
    meta_sgd_init: tuple[float, float] = (0.001, 0.05)
    lr_clip: tuple[float, float] = (0.0, 1.0)
    outer_lr: float = 1e-5
    lr_lr: float | None = None  # outer lr of MetaSGD's learned lrs (defaults to outer_lr)
    group_lr_multipliers: tuple[tuple[str, float], ...] = ()  # e.g. (("log_alpha", 10.0),)
    grad_clip: float | None = None
    batch_size: int = 3
    compile: bool = False
    tf32: bool = True
    # SIREN problems take the hand-written fast path (metasparse.meta.fast_siren); False: torch.func only.
    fast_siren: bool = True


def inner_loop(problem: MetaProblem, meta: Meta, coords, target, noise, steps: int, first_order: bool):
    """K steps of (gated / MetaSGD) gradient descent on one signal; returns the adapted state."""
    fast = problem.init_fast(meta)
    step = problem.step_size(meta, noise)
    inner_grad = grad(problem.loss)
    for _ in range(steps):
        g = inner_grad(fast, meta, coords, target, noise)
        if first_order:
            g = {k: v.detach() for k, v in g.items()}
        fast = {k: fast[k] - step[k] * g[k] for k in fast}
    return fast


def adapted_losses(problem: MetaProblem, meta: Meta, coords, targets, noise, steps: int, first_order: bool):
    """Per-signal loss after adaptation, for a batch of targets (B, P, C): shape (B,)."""

    def one(target):
        fast = inner_loop(problem, meta, coords, target, noise, steps, first_order)
        return problem.loss(fast, meta, coords, target, noise)

    return vmap(one)(targets)


def make_meta_gradient(problem: MetaProblem, config: MetaConfig, fast: bool = True):
    """Return ``f(meta, coords, targets, noise) -> (meta_grad, per_signal_losses)``.

    ``fast``: SIREN problems with the MSE loss take ``metasparse.meta.fast_siren`` (the same meta-gradient
    from hand-written inner gradients, about 2x faster on CPU); ``False`` forces the ``torch.func`` engine
    below, which serves every problem.
    """
    if fast:
        fast_gradient = make_fast_meta_gradient(problem, config)
        if fast_gradient is not None:
            return fast_gradient
    first_order = config.algorithm == "fomaml"
    steps = config.inner_steps

    if config.algorithm == "reptile":

        def reptile_direction(meta, coords, targets, noise):
            fast = vmap(lambda t: inner_loop(problem, meta, coords, t, noise, steps, True))(targets)
            losses = vmap(lambda f, t: problem.loss(f, meta, coords, t, noise))(fast, targets)
            # Reptile moves θ towards the adapted weights; as a "gradient" for Adam: θ - mean φ.
            direction = {g: {k: torch.zeros_like(v) for k, v in d.items()} for g, d in meta.items()}
            shared = {k for k in fast if k in meta.get("theta", {})}
            for k in shared:
                direction["theta"][k] = meta["theta"][k] - fast[k].mean(0)
            return direction, losses.detach()

        return reptile_direction

    def outer_objective(meta, coords, targets, noise):
        losses = adapted_losses(problem, meta, coords, targets, noise, steps, first_order)
        return losses.mean() + problem.regulariser(meta, noise), losses

    meta_grad = grad(outer_objective, has_aux=True)
    if config.compile:
        meta_grad = torch.compile(meta_grad, dynamic=False)
    return meta_grad


class MetaLearner:
    """Owns the meta-state, the outer Adam optimiser and one outer step."""

    def __init__(self, problem: MetaProblem, config: MetaConfig, meta: Meta,
                 grad_reducer: Callable[[list[torch.Tensor]], None] | None = None):
        self.problem = problem
        self.config = config
        self.meta = {g: {k: v.detach().clone().requires_grad_(True) for k, v in d.items()} for g, d in meta.items()}
        self.optimizer = self.new_optimizer()
        self._meta_grad = make_meta_gradient(problem, config, fast=config.fast_siren)
        # Data-parallel runs average the meta-gradient over processes in place (metasparse.training.distributed).
        self.grad_reducer = grad_reducer
        if config.tf32 and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def new_optimizer(self) -> torch.optim.Adam:
        """A new outer Adam over the meta-state, one parameter group (with its own lr) per meta group."""
        config = self.config
        # The problem's own multipliers (e.g. MSCN's gate locations); an explicit config entry wins.
        multipliers = {**self.problem.lr_multipliers(), **dict(config.group_lr_multipliers)}
        groups = []
        for name, tensors in self.meta.items():
            lr = config.outer_lr * multipliers.get(name, 1.0)
            if name == "lrs" and config.lr_lr is not None:
                lr = config.lr_lr
            groups.append({"params": list(tensors.values()), "lr": lr, "name": name})
        return torch.optim.Adam(groups)

    def reset_optimizer(self) -> None:
        """Forget the outer Adam's moments and step count (``prune.fresh_optimizer``)."""
        self.optimizer = self.new_optimizer()

    def set_problem(self, problem: MetaProblem) -> None:
        """Continue with ``problem`` (e.g. the same problem with new pruning masks): the meta-state and the
        optimiser are kept, the (compiled) meta-gradient is rebuilt around it."""
        self.problem = problem
        self._meta_grad = make_meta_gradient(problem, self.config, fast=self.config.fast_siren)

    def params(self) -> list[torch.Tensor]:
        return [v for d in self.meta.values() for v in d.values()]

    def detached_meta(self) -> Meta:
        return {g: {k: v.detach() for k, v in d.items()} for g, d in self.meta.items()}

    def meta_gradient(self, coords, targets, noise=None):
        return self._meta_grad(self.detached_meta(), coords, targets, noise)

    def step(self, coords: torch.Tensor, targets: torch.Tensor, noise_generator: torch.Generator | None = None):
        """One outer step on a batch (B, P, C); returns per-signal post-adaptation losses (tensor).

        Nothing here synchronises with the device: the caller decides when to read the losses.
        """
        noise = self.problem.sample_noise(self.detached_meta(), noise_generator)
        grads, losses = self.meta_gradient(coords, targets, noise)
        for group, tensors in self.meta.items():
            for k, p in tensors.items():
                p.grad = grads[group][k]
        if self.grad_reducer is not None:  # before clipping, so every rank clips the same gradient
            self.grad_reducer([p.grad for p in self.params()])
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params(), self.config.grad_clip)
        self.optimizer.step()
        self.after_step()
        return losses

    def after_step(self) -> None:
        """Keep constrained meta-state valid: MetaSGD lrs inside their clip range, then the problem's own
        constraints (``MetaProblem.project``)."""
        with torch.no_grad():
            if "lrs" in self.meta:
                lo, hi = self.config.lr_clip
                for v in self.meta["lrs"].values():
                    v.clamp_(lo, hi)
            self.problem.project(self.meta)
