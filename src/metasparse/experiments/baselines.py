"""Baselines of Meta-SparseINR's Figure 2 (Lee et al. 2021), next to Algorithm 1 itself.

* **Dense-Narrow**: a dense SIREN whose width is chosen so that its weight count matches a
  pruning round's, meta-trained like the dense model (``dense_narrow_config``).
* **Scratch**: the same narrow widths, randomly initialised and fitted from scratch
  (``scratch_model``).
* **MAML+OneShot**: fit half the test-time steps from the dense MAML initialisation, prune each
  signal's weights once by magnitude down to the target count, fit the other half
  (``fit_one_shot``).
* **MAML+IMP**: prune ``k`` times 20 % during the fit, ``steps / (k + 1)`` steps per phase, each
  signal on its own (``fit_imp``).
* **Random Pruning**: Algorithm 1 with random scores (``random_pruning_config``).

Parameter counts are non-zero *weights* (biases excluded, as the paper counts); biases are
reported beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch.func import vmap

from metasparse.config import PruneConfig, RunConfig, build_problem
from metasparse.meta.fit import FitConfig, fit_batched, signal_copies
from metasparse.metrics import psnr_from_mse
from metasparse.nn.siren import CoordinateNetwork, ModelConfig
from metasparse.sparsity import pruning
from metasparse.sparsity.masks import bias_count, kept_weights
from metasparse.training.model_file import MetaModel

# The widths of the paper's Dense-Narrow / Scratch baselines for the 2-256x4-3 SIREN, one per
# pruning round 0, 1, 2, ... (a width whose weight count is close to 197,888 x 0.8^k).
PAPER_WIDTHS = (256, 230, 206, 184, 164, 148, 132, 118, 106, 94, 84, 76, 68, 60, 54, 48, 44, 38, 34, 32, 28)


def siren_weight_count(width: int, depth: int, in_dim: int = 2, out_dim: int = 3) -> int:
    """Weights (biases excluded) of an ``in_dim``-``width`` x ``depth``-``out_dim`` SIREN."""
    return in_dim * width + (depth - 1) * width * width + width * out_dim


def width_for_count(target: int, depth: int, in_dim: int = 2, out_dim: int = 3) -> int:
    """The width whose dense weight count is closest to ``target`` (ties: the narrower)."""
    best, best_err = 1, None
    w = 1
    while True:
        n = siren_weight_count(w, depth, in_dim, out_dim)
        err = abs(n - target)
        if best_err is None or err < best_err:
            best, best_err = w, err
        if n > target:
            return best
        w += 1


def narrow_widths(model: ModelConfig, rounds: int, fraction: float = 0.2) -> list[int]:
    """Dense-Narrow widths for pruning rounds ``0 .. rounds``: the paper's list for the paper's
    network (2-256x4-3, 20 %; the paper uses it for the FFN too), otherwise the width whose weight
    count is closest to each round's (an even width for an FFN)."""
    if (model.width, model.depth, model.in_dim, model.out_dim) == (256, 4, 2, 3) and fraction == 0.2 and (
        rounds < len(PAPER_WIDTHS)
    ):
        return list(PAPER_WIDTHS[: rounds + 1])
    total = CoordinateNetwork(model).num_weights()
    if model.kind == "ffn":
        return [model.width if k == 0 else ffn_width_for_count(pruning.surviving_after_rounds(total, k, fraction), model)
                for k in range(rounds + 1)]
    return [
        model.width if k == 0 else width_for_count(
            pruning.surviving_after_rounds(total, k, fraction), model.depth, model.in_dim, model.out_dim
        )
        for k in range(rounds + 1)
    ]


def ffn_width_for_count(target: int, model: ModelConfig) -> int:
    """The even width (sin and cos features) whose FFN weight count, the fixed Fourier layer
    excluded, is closest to ``target`` (ties: the narrower)."""
    best, best_err = 2, None
    for w in range(2, 2 * model.width + 2, 2):
        n = CoordinateNetwork(replace(model, width=w)).num_weights()
        if best_err is None or abs(n - target) < best_err:
            best, best_err = w, abs(n - target)
        if n > target:
            break
    return best


# ------------------------------------------------------------------------------ configurations


def dense_narrow_config(config: RunConfig, width: int) -> RunConfig:
    """A dense network of ``width``, meta-trained for the dense schedule of ``config``."""
    return replace(
        config,
        name=f"{config.name}-narrow{width}",
        model=replace(config.model, width=width),
        prune=PruneConfig(rounds=0, fraction=config.prune.fraction, steps_per_round=0),
    )


def random_pruning_config(config: RunConfig) -> RunConfig:
    """Algorithm 1 with random instead of magnitude scores (same counts per round)."""
    return replace(config, name=f"{config.name}-random", prune=replace(config.prune, method="random"))


def scratch_model(config: RunConfig, width: int, seed: int) -> MetaModel:
    """A randomly initialised dense network of ``width`` (the paper's init), as a ``MetaModel``
    so that ``evaluate`` fits it exactly like a meta-learned one."""
    cfg = replace(dense_narrow_config(config, width), name=f"{config.name}-scratch{width}")
    problem = build_problem(cfg)
    meta = problem.init_meta(torch.Generator().manual_seed(seed))
    return MetaModel(cfg, meta, None, {"baseline": "scratch"})


# ------------------------------------------------------------------------------ pruning during the fit


@dataclass
class PrunedFit:
    """Outcome of a fit with per-signal pruning (MAML+OneShot, MAML+IMP)."""

    psnr_per_step: torch.Tensor  # (steps + 1, N)
    final_psnr: torch.Tensor  # (N,)
    nonzero_weights: torch.Tensor  # (N,) non-zero weights of each signal's network
    biases: int
    params: dict[str, torch.Tensor]  # (N, ...) fitted parameters, pruned entries zero
    masks: dict[str, torch.Tensor]  # (N, ...) per-signal masks of the weights


def fit_with_pruning(
    model: CoordinateNetwork,
    theta: dict[str, torch.Tensor],
    coords: torch.Tensor,
    targets: torch.Tensor,
    phases: list[int],
    prune_after,
    fit: FitConfig,
) -> PrunedFit:
    """Adam-fit every signal from ``theta`` for ``sum(phases)`` steps; after each phase but the
    last, ``prune_after(params, masks, phase_index)`` returns new per-signal masks.

    All signals are fitted at once (``fit.batch_size`` at a time); one Adam state spans all
    phases, and the loss is the sum of per-signal MSEs so each signal's fit is independent.
    """
    if fit.optimizer != "adam":
        raise ValueError("pruned fits use Adam (fit.optimizer='adam')")
    chunks = []
    for start in range(0, targets.shape[0], fit.batch_size):
        chunk = targets[start:start + fit.batch_size]
        chunks.append(_fit_chunk_with_pruning(model, theta, coords, chunk, phases, prune_after, fit.lr))
    weights = model.weight_names
    masks = {n: torch.cat([c[3][n] for c in chunks]) for n in weights}
    params = {k: torch.cat([c[2][k] for c in chunks]) for k in chunks[0][2]}
    traj = torch.cat([c[0] for c in chunks], dim=1)
    nonzero = kept_weights(theta, masks, per_signal=True)
    biases = bias_count(theta)
    return PrunedFit(traj, traj[-1], nonzero, biases, params, masks)


def _fit_chunk_with_pruning(model, theta, coords, targets, phases, prune_after, lr):
    params = signal_copies(theta, targets.shape[0])
    masks = {n: torch.ones_like(params[n], requires_grad=False) for n in model.weight_names}

    def loss(p, m, t):
        return ((model.apply(p, coords, masks=m) - t) ** 2).mean()

    batched = vmap(loss)

    def prune(detached, current, phase):
        new = prune_after(detached, current, phase)
        return {n: new[n] for n in model.weight_names}

    fit = fit_batched(batched, params, targets, phases, "adam", lr, masks=masks, after_phase=prune)
    masks = fit.masks
    with torch.no_grad():
        final = batched(params, masks, targets)
        # Adam's momentum moves pruned entries although their gradient is zero: they are zeroed here.
        for n, m in masks.items():
            params[n].mul_(m)
    history = [*fit.losses, final]
    return psnr_from_mse(torch.stack(history)), final, {k: v.detach() for k, v in params.items()}, masks


def fit_one_shot(
    model: CoordinateNetwork, theta, coords, targets, num_to_keep: int, fit: FitConfig
) -> PrunedFit:
    """MAML+OneShot: ``fit.steps // 2`` steps, one global magnitude pruning per signal down to
    ``num_to_keep`` weights, then the remaining steps."""
    first = fit.steps // 2
    names = model.weight_names

    def prune(params, masks, _phase):
        return pruning.prune_to_count_batched(params, masks, num_to_keep, prunable=names)

    return fit_with_pruning(model, theta, coords, targets, [first, fit.steps - first], prune, fit)


def imp_phases(steps: int, prunes: int) -> list[int]:
    """``prunes + 1`` phases of ``steps // (prunes + 1)`` steps; the last takes the remainder."""
    per = steps // (prunes + 1)
    return [per] * prunes + [steps - per * prunes]


def fit_imp(
    model: CoordinateNetwork, theta, coords, targets, prunes: int, fit: FitConfig, fraction: float = 0.2
) -> PrunedFit:
    """MAML+IMP: ``prunes`` rounds of global magnitude pruning (``fraction`` of the survivors) per
    signal during the fit, ``fit.steps / (prunes + 1)`` steps per phase."""
    names = model.weight_names

    def prune(params, masks, _phase):
        return pruning.global_magnitude_prune_batched(params, masks, fraction, prunable=names)

    return fit_with_pruning(model, theta, coords, targets, imp_phases(fit.steps, prunes), prune, fit)
