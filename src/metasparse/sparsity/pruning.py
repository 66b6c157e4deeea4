"""Global pruning of parameter dicts: Algorithm 1 of Meta-SparseINR and its baselines.

Each round removes a fixed fraction (20 %) of the weights that are still alive, using one global
threshold over all prunable layers together (layers compete: a layer may lose more or less than
20 % of its own weights). Biases are never pruned. Masks only ever lose entries: a pruned weight
stays pruned in every later round.

Counting. A round removes ``floor(fraction * surviving)`` weights (the official Meta-SparseINR code
truncates the count with ``int(...)``). Starting from the 197,888 weights of the 2-256-256-256-256-3
SIREN, 15 rounds of 20 % leave exactly **6,964** weights, the count in the paper; rounding to the
nearest integer each round would leave 6,962, and ``round(197,888 x 0.8^15)`` is 6,963.

Ties. Scores are sorted stably over the concatenation of the prunable tensors, flattened row-major,
in the order of ``prunable`` (dict order of the parameters by default): among equal scores the
earliest entry is pruned first, so results never depend on the sorting backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from metasparse.sparsity.masks import weight_names

DEFAULT_PRUNE_FRACTION = 0.2


# ---------------------------------------------------------------------------- counting


def num_to_prune(surviving: int, fraction: float = DEFAULT_PRUNE_FRACTION) -> int:
    """Weights one round removes from ``surviving``: ``floor(fraction * surviving)``.

    The product is rounded to 9 decimals before the floor so that a binary representation error
    (``0.29 * 100 = 28.999999999999996``) does not lose a weight.
    """
    _check_fraction(fraction)
    return math.floor(round(fraction * surviving, 9))


def surviving_after_rounds(num_weights: int, rounds: int, fraction: float = DEFAULT_PRUNE_FRACTION) -> int:
    """Exact number of weights left after ``rounds`` pruning rounds (see the module docstring)."""
    if rounds < 0:
        raise ValueError(f"number of rounds must be non-negative, got {rounds}")
    surviving = int(num_weights)
    for _ in range(rounds):
        surviving -= num_to_prune(surviving, fraction)
    return surviving


# ---------------------------------------------------------------------------- pruning


def prunable_names(
    params_or_masks: Mapping[str, torch.Tensor], prunable: Sequence[str] | None = None
) -> list[str]:
    """The names to prune: ``prunable`` if given (validated), else every ``*.weight``.

    Exclude a fixed layer (the FFN's random Fourier features) by listing the others. Biases are
    never prunable.
    """
    names = weight_names(params_or_masks) if prunable is None else list(prunable)
    biases = [name for name in names if name.endswith(".bias") or name == "bias"]
    if biases:
        raise ValueError(f"biases are never pruned, but {biases} were listed as prunable")
    missing = [name for name in names if name not in params_or_masks]
    if missing:
        raise KeyError(f"no parameters named {missing}")
    if not names:
        raise ValueError("nothing to prune: no prunable weights")
    if len(set(names)) != len(names):
        raise ValueError(f"prunable names repeat: {names}")
    return names


def global_magnitude_prune(
    params: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor] | None,
    fraction: float = DEFAULT_PRUNE_FRACTION,
    prunable: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """One round of Algorithm 1: remove the ``floor(fraction * surviving)`` smallest ``|w|``.

    One global threshold over the surviving weights of all ``prunable`` layers. A prunable
    parameter without a mask starts dense. Returns new masks (non-prunable masks are passed on).
    """
    masks = {} if masks is None else masks
    names = prunable_names(params, prunable)
    return _prune(_magnitudes(params, names), masks, batched=False, fraction=fraction)


def random_prune(
    masks: Mapping[str, torch.Tensor],
    fraction: float = DEFAULT_PRUNE_FRACTION,
    generator: torch.Generator | None = None,
    prunable: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Random Pruning baseline: the same counts as ``global_magnitude_prune``, random scores.

    ``prunable`` defaults to the ``*.weight`` names of ``masks``.
    """
    names = prunable_names(masks, prunable)
    scores = {name: _uniform_like(masks[name], generator) for name in names}
    return _prune(scores, masks, batched=False, fraction=fraction)


def global_magnitude_prune_batched(
    params: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor] | None,
    fraction: float = DEFAULT_PRUNE_FRACTION,
    prunable: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """``global_magnitude_prune`` applied to each signal of a batch independently (MAML+IMP).

    ``params`` carry a leading batch dimension ``(B, *shape)``; ``masks`` may be per signal
    ``(B, *shape)`` or shared ``(*shape)``. Returns per-signal masks ``(B, *shape)`` equal to what
    ``global_magnitude_prune`` gives for each signal alone.
    """
    masks = {} if masks is None else masks
    names = prunable_names(params, prunable)
    return _prune(_magnitudes(params, names), masks, batched=True, fraction=fraction)


def prune_to_count_batched(
    params: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor] | None,
    num_to_keep: int,
    prunable: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """One-shot global magnitude pruning of each signal of a batch down to ``num_to_keep`` weights
    (MAML+OneShot baseline); shapes as in ``global_magnitude_prune_batched``.

    A signal with at most ``num_to_keep`` surviving weights loses nothing (masks never grow).
    """
    if num_to_keep < 0:
        raise ValueError(f"number of weights to keep must be non-negative, got {num_to_keep}")
    masks = {} if masks is None else masks
    names = prunable_names(params, prunable)
    return _prune(_magnitudes(params, names), masks, batched=True, num_to_keep=num_to_keep)


# ---------------------------------------------------------------------------- internals


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"pruning fraction must lie in [0, 1], got {fraction}")


def _magnitudes(params: Mapping[str, torch.Tensor], names: Sequence[str]) -> dict[str, torch.Tensor]:
    return {name: params[name].detach().abs() for name in names}


def _uniform_like(reference: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else reference.device
    return torch.rand(reference.shape, generator=generator, device=device).to(reference.device)


def _prune(
    scores: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    batched: bool,
    fraction: float | None = None,
    num_to_keep: int | None = None,
) -> dict[str, torch.Tensor]:
    """Remove low-score entries of the tensors named in ``scores`` (in their order), per signal.

    Either ``fraction`` of the survivors goes (one IMP round) or all but ``num_to_keep``. The work
    is done on a (signals, all prunable entries) matrix; unbatched input is a batch of one.
    """
    names = list(scores)
    if batched:
        sizes = {int(s.shape[0]) if s.dim() > 0 else -1 for s in scores.values()}
        if len(sizes) != 1 or -1 in sizes:
            raise ValueError("batched pruning needs parameters with one shared leading batch dimension")
        rows = sizes.pop()
    else:
        rows = 1
    per_signal_shapes = {n: scores[n].shape[1:] if batched else scores[n].shape for n in names}
    flat_scores = torch.cat([scores[n].reshape(rows, -1) for n in names], dim=1)
    flat_alive = torch.cat([_alive(masks, n, scores[n], batched).reshape(rows, -1) for n in names], dim=1)

    surviving = [int(s) for s in flat_alive.sum(dim=1)]
    if fraction is not None:
        counts = [num_to_prune(s, fraction) for s in surviving]
    else:
        counts = [max(s - int(num_to_keep or 0), 0) for s in surviving]
    kept = _remove_lowest(flat_scores, flat_alive, torch.tensor(counts, device=flat_scores.device))

    new_masks = dict(masks)
    offset = 0
    for name in names:
        size = per_signal_shapes[name].numel()
        kept_for_name = kept[:, offset : offset + size].reshape(rows, *per_signal_shapes[name])
        offset += size
        previous = masks.get(name)
        dtype = (
            previous.dtype if previous is not None and previous.is_floating_point() else scores[name].dtype
        )
        new_masks[name] = (kept_for_name if batched else kept_for_name[0]).to(dtype)
    return new_masks


def _alive(masks: Mapping[str, torch.Tensor], name: str, score: torch.Tensor, batched: bool) -> torch.Tensor:
    """Boolean "still alive" tensor of the score's shape; a missing mask means dense."""
    mask = masks.get(name)
    if mask is None:
        return torch.ones_like(score, dtype=torch.bool)
    alive = (mask != 0).to(score.device)
    if batched and alive.dim() == score.dim() - 1:  # one mask shared by all signals
        alive = alive.expand(score.shape)
    if alive.shape != score.shape:
        raise ValueError(f"mask of {name} has shape {tuple(mask.shape)}, expected {tuple(score.shape)}")
    return alive


def _remove_lowest(scores: torch.Tensor, alive: torch.Tensor, num_remove: torch.Tensor) -> torch.Tensor:
    """Per row, drop the ``num_remove[row]`` alive entries of lowest score (stable: earliest first).

    Sorting by score, then stably by "dead", lists the alive entries first in score order; the
    first ``num_remove`` of that order are removed. Dead entries never come back.
    """
    by_score = torch.argsort(scores, dim=1, stable=True)
    dead_in_score_order = torch.gather(~alive, 1, by_score).to(torch.int8)
    order = torch.gather(by_score, 1, torch.argsort(dead_in_score_order, dim=1, stable=True))
    rank = torch.arange(scores.shape[1], device=scores.device).expand_as(scores)
    remove_in_order = rank < num_remove.unsqueeze(1)
    remove = torch.zeros_like(alive).scatter(1, order, remove_in_order)
    return alive & ~remove
