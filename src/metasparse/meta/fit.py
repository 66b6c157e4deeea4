"""Test-time fitting: adapt a meta-learned initialisation to many signals at once.

All N signals are fitted together: the fast state carries a leading signal dimension and the
loss is the *sum* of per-signal losses, so each signal's gradient is its own and an element-wise
optimiser (Adam, SGD) behaves exactly as N independent fits. Per-step PSNRs stay on the device
until the end (no host synchronisation inside the loop).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch.func import vmap

from metasparse.meta.problems.base import MetaProblem
from metasparse.metrics import psnr_from_mse


@dataclass(frozen=True)
class FitConfig:
    steps: int = 100
    optimizer: Literal["adam", "sgd", "inner"] = "adam"  # "inner": the meta-learned inner-loop rule
    lr: float = 1e-4
    ema_decay: float | None = None  # EMA of the iterates (MSCN App. D.2); None = off
    batch_size: int = 16  # signals fitted at once (memory bound)


@dataclass
class FitResult:
    fast: dict[str, torch.Tensor]  # adapted state, leading dim N
    psnr_per_step: torch.Tensor  # (steps + 1, N): before each step, and after the last
    final_psnr: torch.Tensor  # (N,)
    reconstructions: torch.Tensor | None = None  # (N, P, C) if requested


def fit_signals(
    problem: MetaProblem,
    meta: dict[str, dict[str, torch.Tensor]],
    coords: torch.Tensor,
    targets: torch.Tensor,
    config: FitConfig,
    keep_reconstructions: bool = False,
    progress=None,
) -> FitResult:
    """Fit ``targets`` (N, P, C) from the meta-learned state, ``config.batch_size`` at a time."""
    meta = {g: {k: v.detach() for k, v in d.items()} for g, d in meta.items()}
    results = []
    n = targets.shape[0]
    for start in range(0, n, config.batch_size):
        chunk = targets[start:start + config.batch_size]
        results.append(_fit_chunk(problem, meta, coords, chunk, config, keep_reconstructions))
        if progress is not None:
            progress(chunk.shape[0])
    fast = {k: torch.cat([r.fast[k] for r in results]) for k in results[0].fast}
    recon = torch.cat([r.reconstructions for r in results]) if keep_reconstructions else None
    return FitResult(
        fast=fast,
        psnr_per_step=torch.cat([r.psnr_per_step for r in results], dim=1),
        final_psnr=torch.cat([r.final_psnr for r in results]),
        reconstructions=recon,
    )


def signal_copies(
    init: Mapping[str, torch.Tensor], count: int, masks: Mapping[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """``count`` independent copies of ``init`` stacked on a leading signal dimension, as fresh leaves
    that require gradients; entries named in ``masks`` (shared or per signal) are multiplied by them."""
    copies = {}
    for name, value in init.items():
        stacked = value.detach().unsqueeze(0).repeat(count, *([1] * value.dim()))
        if masks and name in masks:
            stacked = stacked * masks[name]
        copies[name] = stacked.clone().requires_grad_(True)
    return copies


@dataclass
class BatchedFit:
    losses: list[torch.Tensor]  # one (N,) tensor per step: the per-signal losses before that step
    masks: dict[str, torch.Tensor] | None  # the masks in force at the end (replaced by after_phase)
    ema: dict[str, torch.Tensor] | None  # the average of the iterates, when ema_decay was given


def fit_batched(
    batched_loss: Callable[[dict, dict | None, torch.Tensor], torch.Tensor],
    params: dict[str, torch.Tensor],
    targets: torch.Tensor,
    steps_per_phase: Sequence[int],
    optimizer: Literal["adam", "sgd", "inner"] = "adam",
    lr: float = 1e-4,
    step_sizes: Mapping[str, torch.Tensor] | None = None,
    masks: dict[str, torch.Tensor] | None = None,
    ema_decay: float | None = None,
    after_phase: Callable[[dict, dict | None, int], dict | None] | None = None,
) -> BatchedFit:
    """Fit N signals at once: ``sum(steps_per_phase)`` steps on the sum of the per-signal losses.

    ``params`` are leaves with a leading signal dimension (see ``signal_copies``), updated in place.
    ``batched_loss(params, masks, targets)`` returns the (N,) per-signal losses; the sum makes each
    signal's gradient its own, so the element-wise optimisers behave as N independent fits.
    ``optimizer`` is Adam or SGD at ``lr``, or ``"inner"``: plain steps ``p -= step_sizes[name] * g``
    (the meta-learned inner-loop rule). One optimiser state spans all phases.

    Between phases (not after the last), ``after_phase(detached params, masks, phase_index)`` may
    return new masks (MAML+IMP prunes there): they replace ``masks`` and the masked parameters are
    multiplied by them; ``None`` keeps the masks. With ``ema_decay`` the result also holds the
    exponential average of the iterates (MSCN App. D.2), updated after every step.
    """
    leaves = list(params.values())
    if optimizer == "adam":
        opt = torch.optim.Adam(leaves, lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(leaves, lr=lr)
    elif optimizer == "inner":
        if step_sizes is None:
            raise ValueError("the inner-loop rule needs its step sizes")
        opt = None
    else:
        raise ValueError(f"unknown fitting optimiser {optimizer!r}")
    ema = {k: v.detach().clone() for k, v in params.items()} if ema_decay is not None else None
    losses_per_step = []
    for phase, steps in enumerate(steps_per_phase):
        for _ in range(steps):
            losses = batched_loss(params, masks, targets)
            losses_per_step.append(losses.detach())
            grads = torch.autograd.grad(losses.sum(), leaves)
            with torch.no_grad():
                if opt is None:
                    for (name, value), g in zip(params.items(), grads):
                        value -= step_sizes[name] * g
                else:
                    for value, g in zip(leaves, grads):
                        value.grad = g
                    opt.step()
                if ema is not None:
                    for name, value in params.items():
                        ema[name].mul_(ema_decay).add_(value, alpha=1 - ema_decay)
        if after_phase is not None and phase < len(steps_per_phase) - 1:
            new_masks = after_phase({k: v.detach() for k, v in params.items()}, masks, phase)
            if new_masks is not None:
                masks = {name: m.to(params[name].dtype) for name, m in new_masks.items()}
                with torch.no_grad():
                    for name, m in masks.items():
                        params[name].mul_(m)
    return BatchedFit(losses=losses_per_step, masks=masks, ema=ema)


def _fit_chunk(problem, meta, coords, targets, config: FitConfig, keep_reconstructions: bool) -> FitResult:
    noise = problem.eval_noise(meta)
    fast = signal_copies(problem.init_fast(meta), targets.shape[0])
    per_signal_loss = vmap(lambda f, t: problem.loss(f, meta, coords, t, noise))
    step_sizes = problem.step_size(meta, noise) if config.optimizer == "inner" else None
    fit = fit_batched(
        lambda f, _masks, t: per_signal_loss(f, t), fast, targets, [config.steps], config.optimizer,
        config.lr, step_sizes=step_sizes, ema_decay=config.ema_decay,
    )
    history = fit.losses
    final_fast = fit.ema if fit.ema is not None else {k: v.detach() for k, v in fast.items()}
    with torch.no_grad():
        preds = vmap(lambda f: problem.predict(f, meta, coords, noise))(final_fast)
        final_mse = ((preds - targets) ** 2).mean(dim=(1, 2))
    history.append(final_mse)
    return FitResult(
        fast=final_fast,
        psnr_per_step=psnr_from_mse(torch.stack(history)),
        final_psnr=psnr_from_mse(final_mse),
        reconstructions=preds.clamp(0, 1) if keep_reconstructions else None,
    )
