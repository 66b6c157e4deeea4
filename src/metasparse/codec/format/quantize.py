"""Uniform scalar quantisation of modulations, in units of their training-set spread.

A value ``x`` is normalised with the training mean and standard deviation, clipped to
``[-clip_std, +clip_std]``, mapped linearly to ``[0, 1]`` and rounded onto ``2**bits`` levels:

    symbol = round((clip((x - mean) / std, -R, R) + R) / (2 R) * (2**bits - 1))

so the step in the original units is ``2 R std / (2**bits - 1)`` and every value inside the
clipping range comes back within half a step.

All parameters are rounded to float32 when the quantiser is made, so they survive storage as
float32 (safetensors, the f32 clip field of the bitstream header) without changing a single
reconstructed value: encoder and decoder always dequantise with bit-identical parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from metasparse.errors import ModelError

MIN_BITS = 1
MAX_BITS = 16
# A training set whose values are all equal has std 0; dividing by it would give inf/nan
# symbols, so the spread is floored at a value far below any meaningful modulation scale.
MIN_STD = 1e-12

ArrayLike = TypeVar("ArrayLike", torch.Tensor, np.ndarray)


def _as_float32(value: float) -> float:
    """The nearest float32 to ``value``, as a Python float (exactly representable in float32)."""
    return float(np.float32(value))


def _check_bits_and_clip(bits: int, clip_std: float) -> None:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"quantisation bits must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits!r}")
    if not math.isfinite(clip_std) or clip_std <= 0:
        raise ValueError(
            f"clip_std must be a positive finite number of standard deviations, got {clip_std!r}"
        )


@dataclass(frozen=True)
class QuantizerConfig:
    """How finely to quantise: ``bits`` per symbol and the clipping range ``±clip_std`` std."""

    bits: int
    clip_std: float

    def __post_init__(self) -> None:
        _check_bits_and_clip(self.bits, self.clip_std)
        object.__setattr__(self, "bits", int(self.bits))
        object.__setattr__(self, "clip_std", _as_float32(self.clip_std))

    @property
    def num_symbols(self) -> int:
        return 1 << self.bits


@dataclass(frozen=True)
class Quantizer:
    """A fitted uniform quantiser; see the module docstring for the mapping."""

    mean: float
    std: float
    bits: int
    clip_std: float

    def __post_init__(self) -> None:
        _check_bits_and_clip(self.bits, self.clip_std)
        if not math.isfinite(self.mean):
            raise ValueError(f"quantiser mean must be finite, got {self.mean!r}")
        if not math.isfinite(self.std) or self.std <= 0:
            raise ValueError(f"quantiser std must be positive and finite, got {self.std!r}")
        object.__setattr__(self, "bits", int(self.bits))
        object.__setattr__(self, "clip_std", _as_float32(self.clip_std))
        object.__setattr__(self, "mean", _as_float32(self.mean))
        object.__setattr__(self, "std", _as_float32(max(self.std, MIN_STD)))

    @property
    def config(self) -> QuantizerConfig:
        return QuantizerConfig(bits=self.bits, clip_std=self.clip_std)

    @property
    def num_symbols(self) -> int:
        return 1 << self.bits

    @property
    def max_symbol(self) -> int:
        return self.num_symbols - 1

    @property
    def step(self) -> float:
        """Distance between neighbouring reconstruction levels, in the units of the values."""
        return 2.0 * self.clip_std * self.std / self.max_symbol

    def quantize(self, values: ArrayLike) -> ArrayLike:
        """Symbols in ``[0, 2**bits - 1]`` as int64, of the same kind (tensor/array) and shape.

        Values outside ``mean ± clip_std * std`` saturate at the first or last level. NaN is
        rejected rather than silently mapped to some symbol.
        """
        as_tensor = isinstance(values, torch.Tensor)
        # float64 so that rounding does not depend on the caller's dtype or device.
        x = (
            values.detach().to("cpu", torch.float64)
            if as_tensor
            else torch.from_numpy(np.array(values, dtype=np.float64))
        )
        if torch.isnan(x).any():
            raise ValueError("cannot quantise NaN values")
        normalised = ((x - self.mean) / self.std).clamp(-self.clip_std, self.clip_std)
        unit = (normalised + self.clip_std) / (2.0 * self.clip_std)
        symbols = torch.round(unit * self.max_symbol).to(torch.int64).clamp_(0, self.max_symbol)
        if as_tensor:
            return symbols.to(values.device)
        return symbols.numpy()

    def dequantize(self, symbols: ArrayLike, dtype: torch.dtype = torch.float32) -> ArrayLike:
        """Reconstruction levels for ``symbols`` (tensor in, tensor out of ``dtype``; array in,
        float32 array out). Symbols outside the alphabet are an error, not clipped: they can
        only come from a bug or a corrupt file."""
        as_tensor = isinstance(symbols, torch.Tensor)
        s = (
            symbols.detach().to("cpu", torch.float64)
            if as_tensor
            else torch.from_numpy(np.asarray(symbols).astype(np.float64))
        )
        if s.numel() and (s.min() < 0 or s.max() > self.max_symbol or not torch.equal(s, s.round())):
            raise ValueError(f"symbols must be integers in [0, {self.max_symbol}]")
        unit = s / self.max_symbol
        values = (unit * (2.0 * self.clip_std) - self.clip_std) * self.std + self.mean
        if as_tensor:
            return values.to(device=symbols.device, dtype=dtype)
        return values.numpy().astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able description (floats are float32 values, so they round-trip exactly)."""
        return {"bits": self.bits, "clip_std": self.clip_std, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: Any) -> Quantizer:
        """Inverse of :meth:`to_dict`; raises ``ModelError`` for a missing or invalid field."""
        if not isinstance(data, dict):
            raise ModelError(f"quantiser description must be a mapping, got {type(data).__name__}")
        try:
            bits = data["bits"]
            if isinstance(bits, bool) or not isinstance(bits, int):
                raise TypeError(f"bits must be an integer, got {bits!r}")
            return cls(
                mean=float(data["mean"]), std=float(data["std"]), bits=bits, clip_std=float(data["clip_std"])
            )
        except KeyError as missing:
            raise ModelError(f"quantiser description lacks the field {missing}") from None
        except (TypeError, ValueError) as error:
            raise ModelError(f"invalid quantiser description: {error}") from None


def fit_quantizer(values: torch.Tensor | np.ndarray, bits: int, clip_std: float) -> Quantizer:
    """Fit mean and std on ``values`` (1-D, the non-zero modulations of a training set)."""
    config = QuantizerConfig(bits=bits, clip_std=clip_std)
    if isinstance(values, torch.Tensor):
        data = values.detach().to("cpu", torch.float64).reshape(-1)
    else:
        data = torch.from_numpy(np.array(values, dtype=np.float64).reshape(-1))
    if data.numel() == 0:
        raise ValueError("cannot fit a quantiser on no values")
    if not torch.isfinite(data).all():
        raise ValueError("cannot fit a quantiser on non-finite values")
    mean = float(data.mean())
    # Population std: with a single value it is 0 and gets floored rather than being NaN.
    std = float(data.std(correction=0))
    return Quantizer(mean=mean, std=max(std, MIN_STD), bits=config.bits, clip_std=config.clip_std)
