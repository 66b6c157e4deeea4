"""Binary masks over parameter dicts, and the parameter counts the papers report.

A mask dict has a subset of the parameter names as keys and 0/1 float tensors of the parameters'
shapes as values; a parameter without a mask is dense. Masks are applied as ``w * m`` in the
forward pass, so pruned weights keep their values (they receive no gradient through the product)
and the same functions work under ``torch.func.vmap``.

Both papers count **non-zero weights only**, biases excluded: Meta-SparseINR's 6,964 parameters are
197,888 SIREN weights x 0.8^15, and a width-48 Dense-Narrow net has 7,152 weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import torch


def weight_names(params: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the weights (``*.weight``) in dict order."""
    return [name for name in params if name.endswith(".weight") or name == "weight"]


def bias_names(params: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the biases (``*.bias``) in dict order."""
    return [name for name in params if name.endswith(".bias") or name == "bias"]


def ones_like_masks(
    params: Mapping[str, torch.Tensor], names: Iterable[str] | None = None
) -> dict[str, torch.Tensor]:
    """All-ones masks for ``names`` (default: every weight), in the parameters' shapes and dtypes."""
    selected = weight_names(params) if names is None else list(names)
    missing = [name for name in selected if name not in params]
    if missing:
        raise KeyError(f"no parameters named {missing}")
    return {name: torch.ones_like(params[name]) for name in selected}


def apply_masks(
    params: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None
) -> dict[str, torch.Tensor]:
    """A new parameter dict with every masked parameter multiplied by its mask (others unchanged).

    Masks broadcast, so a shared mask applies to a batch of per-signal parameters.
    """
    if not masks:
        return dict(params)
    unknown = [name for name in masks if name not in params]
    if unknown:
        raise KeyError(f"masks for parameters that do not exist: {unknown}")
    return {name: p * masks[name] if name in masks else p for name, p in params.items()}


def density(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of mask entries that are kept, over all masks together (1.0 for no masks)."""
    total = sum(m.numel() for m in masks.values())
    if total == 0:
        return 1.0
    return float(sum(int(torch.count_nonzero(m)) for m in masks.values())) / total


def layer_densities(masks: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Fraction of kept entries of each mask."""
    return {name: float(torch.count_nonzero(m)) / max(m.numel(), 1) for name, m in masks.items()}


class NonzeroCount(NamedTuple):
    """Non-zero weights and non-zero biases of a (masked) parameter dict."""

    weights: int
    biases: int

    @property
    def total(self) -> int:
        return self.weights + self.biases


def count_nonzero_by_kind(
    params: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None = None
) -> NonzeroCount:
    """Non-zero entries of ``params * masks``, weights and biases separately.

    Values are counted, not mask entries, so an unmasked dense net counts its non-zero weights.
    Parameters that are neither ``*.weight`` nor ``*.bias`` (modulations, learned learning rates)
    are not counted.
    """
    masked = apply_masks(params, masks)
    weights = sum(int(torch.count_nonzero(masked[name])) for name in weight_names(masked))
    biases = sum(int(torch.count_nonzero(masked[name])) for name in bias_names(masked))
    return NonzeroCount(weights=weights, biases=biases)


def count_nonzero(
    params: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor] | None = None,
    include_biases: bool = False,
) -> int:
    """The parameter count the papers report: non-zero weights, plus biases if ``include_biases``."""
    counts = count_nonzero_by_kind(params, masks)
    return counts.total if include_biases else counts.weights
