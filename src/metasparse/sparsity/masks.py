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

import torch


def weight_names(params: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the weights (``*.weight``) in dict order."""
    return [name for name in params if name.endswith(".weight") or name == "weight"]


def bias_names(params: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the biases (``*.bias``) in dict order."""
    return [name for name in params if name.endswith(".bias") or name == "bias"]


def count_nonzero(tensors: Iterable[torch.Tensor], per_signal: bool = False) -> int | torch.Tensor:
    """Exact number of non-zero entries over all ``tensors`` together (no tolerance).

    With ``per_signal`` every tensor carries a leading signal dimension and the result is a (N,)
    int64 tensor (on the tensors' device), one count per signal.
    """
    tensors = list(tensors)
    if per_signal:
        if not tensors:
            raise ValueError("counting per signal needs at least one tensor (for the number of signals)")
        return sum((t != 0).reshape(t.shape[0], -1).sum(dim=1) for t in tensors)
    return sum(int(torch.count_nonzero(t)) for t in tensors)


def kept_weights(
    params: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor] | None = None,
    per_signal: bool = False,
) -> int | torch.Tensor:
    """The weights a (masked) network keeps, the count the papers report: biases are excluded.

    A masked weight counts its kept mask entries, an unmasked one all its entries (whatever their
    values). ``params`` have the shapes of one network; with ``per_signal`` the masks carry a
    leading signal dimension ``(N, ...)`` and the result is a (N,) int64 tensor.
    """
    masks = masks or {}
    names = weight_names(params)
    dense = sum(params[name].numel() for name in names if name not in masks)
    masked = [masks[name] for name in names if name in masks]
    if per_signal:
        return count_nonzero(masked, per_signal=True) + dense
    return count_nonzero(masked) + dense


def bias_count(params: Mapping[str, torch.Tensor]) -> int:
    """Number of bias entries (biases are never pruned, so all of them are sent)."""
    return sum(params[name].numel() for name in bias_names(params))
