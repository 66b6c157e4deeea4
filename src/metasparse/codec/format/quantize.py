"""Uniform scalar quantisation of modulations, in units of their training-set spread.

A value ``x`` is normalised with the training mean and standard deviation, clipped to
``[-clip_std, +clip_std]``, mapped linearly to ``[0, 1]`` and rounded onto ``2**bits`` levels:

    symbol = round((clip((x - mean) / std, -R, R) + R) / (2 R) * (2**bits - 1))

so the step in the original units is ``2 R std / (2**bits - 1)`` and every value inside the
clipping range comes back within half a step.

All parameters are rounded to float32 when the quantiser is made, so they survive storage as
float32 (safetensors, the f32 clip field of the bitstream header) without changing a single
reconstructed value: encoder and decoder always dequantise with bit-identical parameters.

The arithmetic is numpy's, in float64, one operation at a time (no fused multiply-add), so that it
rounds exactly as it always has. Values may be arrays or tensors (:func:`.arrays.as_array`); results
are numpy arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from metasparse.codec.format.arrays import as_array
from metasparse.errors import ModelError

MIN_BITS = 1
MAX_BITS = 16
# A training set whose values are all equal has std 0; dividing by it would give inf/nan
# symbols, so the spread is floored at a value far below any meaningful modulation scale.
MIN_STD = 1e-12


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

    def quantize(self, values: Any) -> np.ndarray:
        """Symbols in ``[0, 2**bits - 1]``: an int64 array of the shape of ``values`` (an array or a
        tensor; see the module docstring).

        Values outside ``mean ± clip_std * std`` saturate at the first or last level. NaN is
        rejected rather than silently mapped to some symbol.
        """
        # float64 so that rounding does not depend on the caller's dtype or device.
        x = np.array(as_array(values), dtype=np.float64)
        if np.isnan(x).any():
            raise ValueError("cannot quantise NaN values")
        normalised = np.clip((x - self.mean) / self.std, -self.clip_std, self.clip_std)
        unit = (normalised + self.clip_std) / (2.0 * self.clip_std)
        # np.rint rounds half to even, as torch.round did.
        return np.clip(np.rint(unit * self.max_symbol).astype(np.int64), 0, self.max_symbol)

    def dequantize(self, symbols: Any, dtype: Any = np.float32) -> np.ndarray:
        """Reconstruction levels for ``symbols`` (an array or a tensor of integers), as an array of
        ``dtype`` (float32 unless asked otherwise), computed in float64 and rounded once. Symbols
        outside the alphabet are an error, not clipped: they can only come from a bug or a corrupt
        file."""
        s = np.array(as_array(symbols), dtype=np.float64)
        if s.size and (s.min() < 0 or s.max() > self.max_symbol or not np.array_equal(s, np.rint(s))):
            raise ValueError(f"symbols must be integers in [0, {self.max_symbol}]")
        unit = s / self.max_symbol
        values = (unit * (2.0 * self.clip_std) - self.clip_std) * self.std + self.mean
        return values.astype(dtype)

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


def fit_quantizer(values: Any, bits: int, clip_std: float) -> Quantizer:
    """Fit mean and std on ``values`` (1-D, the non-zero modulations of a training set; an array or
    a tensor)."""
    config = QuantizerConfig(bits=bits, clip_std=clip_std)
    data = np.array(as_array(values), dtype=np.float64).reshape(-1)
    if data.size == 0:
        raise ValueError("cannot fit a quantiser on no values")
    if not np.isfinite(data).all():
        raise ValueError("cannot fit a quantiser on non-finite values")
    mean = float(data.mean())
    # Population std: with a single value it is 0 and gets floored rather than being NaN.
    std = float(data.std(ddof=0))
    return Quantizer(mean=mean, std=max(std, MIN_STD), bits=config.bits, clip_std=config.clip_std)
