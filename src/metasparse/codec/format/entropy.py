"""Range coding of quantised symbols with a fixed, pre-fitted categorical model.

The model is a table of integer frequencies of shape ``(positions, num_symbols)``; every row
sums to ``2**FREQUENCY_BITS`` and every entry is at least 1, so any symbol stays encodable
even if it never occurred in training. ``positions == 1`` is one model shared by all symbols;
otherwise row ``p`` models the symbol at position ``p`` of each vector (e.g. modulation
index ``p`` of a patch).

Why integers: the coder (``constriction``'s range coder) takes float32 probabilities and
converts them to its own fixed-point table. Encoder and decoder must do that from bit-identical
inputs, so the model itself is stored as integers and the float32 probabilities are derived
as ``frequency / 2**FREQUENCY_BITS``, which float32 represents exactly. The conversion in
``constriction`` is deterministic, so decoding gives the same symbols on every run and machine.

Stream layout: the symbols are grouped by position (stably, so each group keeps its order) and
each group is coded as i.i.d. symbols with its row's model; the groups follow one another in
the same range-coded stream. The stream is the coder's 32-bit words in little-endian order,
with trailing zero bytes dropped (the decoder reads missing data as zeros, so they carry no
information).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import constriction
import numpy as np

from metasparse.codec.format.arrays import as_array
from metasparse.errors import BitstreamError, ModelError

# constriction's range coder works at 24-bit probability precision; with a total of exactly
# 2**24 every probability k / 2**24 (k < 2**24) is exact in float32 (24-bit significand).
FREQUENCY_BITS = 24
FREQUENCY_TOTAL = 1 << FREQUENCY_BITS
MAX_NUM_SYMBOLS = 1 << 16
# Upper bound on the table size accepted from a file, so a corrupt header cannot make us
# allocate gigabytes (2**26 entries = 256 MiB as uint32, far beyond any real model).
MAX_TABLE_ENTRIES = 1 << 26

_MODEL_MAGIC = b"MSEM"
_MODEL_VERSION = 1
_MODEL_HEADER = struct.Struct("<4sBBII")  # magic, version, frequency bits, positions, num_symbols


def _frequencies_from_counts(counts: np.ndarray, smoothing: float) -> np.ndarray:
    """Integer frequencies (each >= 1, rows summing to FREQUENCY_TOTAL) from symbol counts.

    Additive smoothing first, then the largest-remainder method so that the integer table is
    as close as possible to the smoothed distribution.
    """
    positions, num_symbols = counts.shape
    smoothed = counts.astype(np.float64) + smoothing
    probabilities = smoothed / smoothed.sum(axis=1, keepdims=True)
    # Reserve one unit per symbol so that nothing rounds down to zero.
    spare = FREQUENCY_TOTAL - num_symbols
    scaled = probabilities * spare
    frequencies = np.floor(scaled).astype(np.int64)
    remainders = scaled - frequencies
    missing = spare - frequencies.sum(axis=1)
    for row in range(positions):
        if missing[row] > 0:
            # Stable sort so ties are broken by symbol index, independent of the platform.
            order = np.argsort(-remainders[row], kind="stable")[: missing[row]]
            frequencies[row, order] += 1
    return frequencies + 1


@dataclass(eq=False)
class SymbolModel:
    """Integer frequency table ``(positions, num_symbols)``; see the module docstring."""

    frequencies: np.ndarray
    _coder_models: dict[int, object] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        table = np.asarray(self.frequencies)
        if table.ndim != 2 or table.shape[0] < 1 or not 2 <= table.shape[1] <= MAX_NUM_SYMBOLS:
            raise ModelError(
                f"symbol model table must have shape (positions >= 1, 2..{MAX_NUM_SYMBOLS} symbols), "
                f"got {table.shape}"
            )
        if not np.issubdtype(table.dtype, np.integer):
            raise ModelError(f"symbol model frequencies must be integers, got {table.dtype}")
        table = table.astype(np.int64)
        if table.min() < 1 or np.any(table.sum(axis=1) != FREQUENCY_TOTAL):
            raise ModelError(
                "symbol model is corrupt: frequencies must be >= 1 "
                f"and each row must sum to {FREQUENCY_TOTAL}"
            )
        self.frequencies = table.astype(np.uint32)
        self.frequencies.setflags(write=False)

    @property
    def positions(self) -> int:
        return int(self.frequencies.shape[0])

    @property
    def num_symbols(self) -> int:
        return int(self.frequencies.shape[1])

    @property
    def per_position(self) -> bool:
        return self.positions > 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SymbolModel) and np.array_equal(self.frequencies, other.frequencies)

    def probabilities(self) -> np.ndarray:
        """The exact float32 probabilities handed to the coder, shape (positions, num_symbols)."""
        return (self.frequencies.astype(np.float64) / FREQUENCY_TOTAL).astype(np.float32)

    def coder_model(self, position: int) -> object:
        """The ``constriction`` categorical model of one row, built once and cached."""
        model = self._coder_models.get(position)
        if model is None:
            probabilities = self.frequencies[position].astype(np.float32) / np.float32(FREQUENCY_TOTAL)
            # perfect=False: fast, deterministic construction; both sides must use the same setting.
            model = constriction.stream.model.Categorical(probabilities, perfect=False)
            self._coder_models[position] = model
        return model

    def to_bytes(self) -> bytes:
        """Compact serialisation: a small header then the zlib-compressed uint32 table.

        Smoothed entries of unused symbols are all tiny and alike, so the table compresses well.
        """
        header = _MODEL_HEADER.pack(
            _MODEL_MAGIC, _MODEL_VERSION, FREQUENCY_BITS, self.positions, self.num_symbols
        )
        return header + zlib.compress(self.frequencies.astype("<u4").tobytes(), level=9)

    @classmethod
    def from_bytes(cls, data: bytes) -> SymbolModel:
        """Inverse of :meth:`to_bytes`; raises ``ModelError`` for anything malformed."""
        if len(data) < _MODEL_HEADER.size:
            raise ModelError("symbol model data is truncated")
        magic, version, frequency_bits, positions, num_symbols = _MODEL_HEADER.unpack_from(data)
        if magic != _MODEL_MAGIC:
            raise ModelError("not a metasparse symbol model (bad magic bytes)")
        if version != _MODEL_VERSION:
            raise ModelError(
                f"unsupported symbol model version {version} (this build reads {_MODEL_VERSION})"
            )
        if frequency_bits != FREQUENCY_BITS:
            raise ModelError(f"symbol model uses {frequency_bits}-bit frequencies, expected {FREQUENCY_BITS}")
        if (
            positions < 1
            or not 2 <= num_symbols <= MAX_NUM_SYMBOLS
            or positions * num_symbols > MAX_TABLE_ENTRIES
        ):
            raise ModelError(f"symbol model has an implausible size ({positions} x {num_symbols})")
        expected_length = positions * num_symbols * 4
        # Bounded decompression: never inflate more than the header promises.
        decompressor = zlib.decompressobj()
        try:
            raw = decompressor.decompress(data[_MODEL_HEADER.size :], expected_length)
        except zlib.error as error:
            raise ModelError(f"symbol model table is corrupt ({error})") from None
        if len(raw) != expected_length or decompressor.unconsumed_tail or not decompressor.eof:
            raise ModelError("symbol model table has the wrong length")
        table = np.frombuffer(raw, dtype="<u4").reshape(positions, num_symbols)
        return cls(table)


def fit_symbol_model(
    symbols: Any,
    num_symbols: int,
    per_position: bool,
    smoothing: float = 0.5,
) -> SymbolModel:
    """Fit a frequency model on training symbols.

    ``symbols``: integers in ``[0, num_symbols)``, either ``(num_vectors, dim)`` or 1-D.
    ``per_position=True`` needs the 2-D form and fits one row per column; otherwise all
    symbols share one row. ``smoothing`` is the pseudo-count added to every symbol (0.5 is the
    Krichevsky-Trofimov estimator), which keeps unseen symbols encodable at a modest cost.
    """
    data = _as_int64_array(symbols)
    if not 2 <= num_symbols <= MAX_NUM_SYMBOLS:
        raise ValueError(f"num_symbols must be in [2, {MAX_NUM_SYMBOLS}], got {num_symbols}")
    if not smoothing > 0:
        raise ValueError(f"smoothing must be positive so that every symbol stays encodable, got {smoothing}")
    if data.size and (data.min() < 0 or data.max() >= num_symbols):
        raise ValueError(f"training symbols must lie in [0, {num_symbols})")
    if per_position:
        if data.ndim != 2 or data.shape[1] < 1:
            raise ValueError(
                f"a per-position model needs symbols of shape (num_vectors, dim), got {data.shape}"
            )
        counts = np.zeros((data.shape[1], num_symbols), dtype=np.int64)
        for position in range(data.shape[1]):
            counts[position] = np.bincount(data[:, position], minlength=num_symbols)
    else:
        counts = np.bincount(data.reshape(-1), minlength=num_symbols)[None, :]
    return SymbolModel(_frequencies_from_counts(counts, smoothing))


def _as_int64_array(symbols: Any) -> np.ndarray:
    array = as_array(symbols)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"symbols must be integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _position_of_each_symbol(count: int, model: SymbolModel, positions: np.ndarray | None) -> np.ndarray:
    """Which row of the model codes each of ``count`` symbols (validated)."""
    if positions is not None:
        position_ids = _as_int64_array(positions).reshape(-1)
        if position_ids.size != count:
            raise ValueError(f"got {position_ids.size} positions for {count} symbols")
        if count and (position_ids.min() < 0 or position_ids.max() >= model.positions):
            raise ValueError(f"positions must lie in [0, {model.positions})")
        return position_ids
    if not model.per_position:
        return np.zeros(count, dtype=np.int64)
    if count % model.positions:
        raise ValueError(
            f"{count} symbols do not form whole vectors of {model.positions} for a per-position model"
        )
    return np.tile(np.arange(model.positions, dtype=np.int64), count // model.positions)


def _coding_groups(position_ids: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The stream order (a permutation) and ``(position, start, stop)`` of each group in it."""
    order = np.argsort(position_ids, kind="stable")
    sorted_positions = position_ids[order]
    groups = []
    if sorted_positions.size:
        boundaries = np.flatnonzero(np.diff(sorted_positions)) + 1
        starts = np.concatenate(([0], boundaries))
        stops = np.concatenate((boundaries, [sorted_positions.size]))
        groups = [(int(sorted_positions[a]), int(a), int(b)) for a, b in zip(starts, stops)]
    return order, groups


def encode(
    symbols: Any, model: SymbolModel, positions: np.ndarray | None = None
) -> bytes:
    """Range-code ``symbols`` (any shape, read in row-major order) with ``model``.

    Which model row codes each symbol: ``positions`` if given (one id per symbol, e.g. the
    modulation indices of a sparse vector); otherwise row 0 for a shared model, or
    ``index % model.positions`` for a per-position model (so ``(num_vectors, dim)`` input
    just works). Empty input gives ``b""``.
    """
    flat = _as_int64_array(symbols).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= model.num_symbols):
        raise ValueError(f"symbols must lie in [0, {model.num_symbols}) for this model")
    order, groups = _coding_groups(_position_of_each_symbol(flat.size, model, positions))
    stream = flat[order].astype(np.int32)
    encoder = constriction.stream.queue.RangeEncoder()
    for position, start, stop in groups:
        encoder.encode(stream[start:stop], model.coder_model(position))
    words = encoder.get_compressed()
    return words.astype("<u4").tobytes().rstrip(b"\0")


def decode(data: bytes, count: int, model: SymbolModel, positions: np.ndarray | None = None) -> np.ndarray:
    """Decode ``count`` symbols (1-D int64, the order :func:`encode` read them in).

    ``positions`` must be what was given to :func:`encode`. Any byte string decodes to either
    some symbols (corruption is then the container checksum's job) or a ``BitstreamError``;
    data left over after ``count`` symbols is reported as corruption. ``count`` is trusted:
    it must come from validated header fields, since a few bytes can legitimately hold very
    many highly probable symbols (an all-zero stream is even stored as no bytes at all).
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    padded = bytes(data) + b"\0" * (-len(data) % 4)
    order, groups = _coding_groups(_position_of_each_symbol(int(count), model, positions))
    words = np.frombuffer(padded, dtype="<u4").astype(np.uint32)
    stream = np.empty(int(count), dtype=np.int64)
    try:
        decoder = constriction.stream.queue.RangeDecoder(words)
        for position, start, stop in groups:
            stream[start:stop] = decoder.decode(model.coder_model(position), stop - start)
        exhausted = decoder.maybe_exhausted()
    except BaseException as error:
        # constriction reports an invalid stream with an AssertionError, and pyo3 turns a Rust
        # panic into PanicException, which derives from BaseException; neither may escape.
        if not isinstance(error, Exception) and type(error).__name__ != "PanicException":
            raise
        raise BitstreamError("entropy-coded data is corrupt") from None
    if not exhausted:
        raise BitstreamError("entropy-coded data is corrupt: data left over after the last symbol")
    symbols = np.empty(int(count), dtype=np.int64)
    symbols[order] = stream
    return symbols


def estimated_bits(
    symbols: Any, model: SymbolModel, positions: np.ndarray | None = None
) -> float:
    """The ideal code length ``sum(-log2 p(symbol))`` in bits under ``model``."""
    flat = _as_int64_array(symbols).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= model.num_symbols):
        raise ValueError(f"symbols must lie in [0, {model.num_symbols}) for this model")
    position_ids = _position_of_each_symbol(flat.size, model, positions)
    frequencies = model.frequencies[position_ids, flat].astype(np.float64)
    return float(np.sum(FREQUENCY_BITS - np.log2(frequencies)))
