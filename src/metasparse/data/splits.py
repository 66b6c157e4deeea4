"""Deterministic, named dataset splits.

A split selects items from a list of names (file names or relative paths, in the order the
loader gives them: sorted). Specs, for the CLI and preset configs::

    all                  everything
    first:100            the first 100 names
    last:100             the last 100 names
    slice:100:200        positions 100 .. 199 (a Python slice: 0-based, end excluded, may be negative)
    range:33-8000        files whose *number* is 33 .. 8000, both included; the number is the last
                         run of digits in the file's name ("000033.jpg" -> 33)
    train:0.1            the training part of a seeded hash split with 10 % validation (seed 0)
    val:0.1,7            the validation part of that split with seed 7
    celeba_train         a named split from ``SPLITS`` (here range:33-8000)
    celeba_train+first:100   splits chained with "+", applied left to right

The named CelebA splits are the project's fixed split of aligned faces 1-9000: 000033-008000 for
training, 008001-009000 for testing; 000001-000032 (``celeba_sample``) are held out because they
are the same faces as the 178x218 originals.

The hash split (:func:`split_files`) puts a file in validation when a seeded hash of its name
falls below ``val_fraction``. Each file's side depends only on its name and the seed, so the
split does not change when files are reordered, and adding or removing files never moves the
others from one side to the other.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import PurePath
from typing import TypeVar

from metasparse.errors import DataError
from metasparse.utils.registry import Registry

__all__ = [
    "SPLITS",
    "AllSplit",
    "ChainSplit",
    "FirstSplit",
    "HashSplit",
    "LastSplit",
    "NumberRangeSplit",
    "SliceSplit",
    "Split",
    "apply_split",
    "available_splits",
    "file_number",
    "hash_unit",
    "parse_split",
    "register_split",
    "split_files",
]

T = TypeVar("T")

_DIGITS = re.compile(r"(\d+)")


def _name(item) -> str:
    """The name a split sees: a string or path in POSIX form."""
    if isinstance(item, PurePath):
        return item.as_posix()
    return os.fspath(item).replace("\\", "/")


def file_number(name) -> int | None:
    """The last run of digits in the final component's stem (``"a/000033.jpg"`` → 33), or None."""
    base = _name(name).rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    runs = _DIGITS.findall(stem)
    return int(runs[-1]) if runs else None


def hash_unit(name, seed: int = 0) -> float:
    """A seeded hash of a name mapped to [0, 1) (BLAKE2b, stable across runs and platforms)."""
    digest = hashlib.blake2b(f"{int(seed)}:{_name(name)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class Split:
    """Base class: ``select(names) -> indices`` (in the input order); ``spec`` parses back to it."""

    def select(self, names: Sequence) -> list[int]:  # pragma: no cover - overridden
        raise NotImplementedError

    def __call__(self, items: Sequence[T]) -> list[T]:
        """The selected items themselves."""
        return [items[i] for i in self.select(items)]

    @property
    def spec(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Split) and self.spec == other.spec

    def __hash__(self) -> int:
        return hash(self.spec)


class AllSplit(Split):
    def select(self, names):
        return list(range(len(names)))

    @property
    def spec(self):
        return "all"


class FirstSplit(Split):
    def __init__(self, n: int):
        if int(n) < 0:
            raise DataError(f"first:N needs N >= 0, got {n}")
        self.n = int(n)

    def select(self, names):
        return list(range(min(self.n, len(names))))

    @property
    def spec(self):
        return f"first:{self.n}"


class LastSplit(Split):
    def __init__(self, n: int):
        if int(n) < 0:
            raise DataError(f"last:N needs N >= 0, got {n}")
        self.n = int(n)

    def select(self, names):
        return list(range(max(0, len(names) - self.n), len(names)))

    @property
    def spec(self):
        return f"last:{self.n}"


class SliceSplit(Split):
    """Positions ``start:stop`` of the list, as a Python slice (0-based, ``stop`` excluded)."""

    def __init__(self, start: int | None, stop: int | None):
        self.start, self.stop = start, stop

    def select(self, names):
        return list(range(len(names)))[self.start : self.stop]

    @property
    def spec(self):
        s = "" if self.start is None else str(self.start)
        e = "" if self.stop is None else str(self.stop)
        return f"slice:{s}:{e}"


class NumberRangeSplit(Split):
    """Files whose number (:func:`file_number`) is in ``[first, last]``, both included."""

    def __init__(self, first: int, last: int):
        if int(first) > int(last):
            raise DataError(f"range:{first}-{last} is empty (first > last)")
        self.first, self.last = int(first), int(last)

    def select(self, names):
        out = []
        for i, name in enumerate(names):
            num = file_number(name)
            if num is None:
                raise DataError(f"split {self.spec}: file {_name(name)!r} has no number in its name")
            if self.first <= num <= self.last:
                out.append(i)
        return out

    @property
    def spec(self):
        return f"range:{self.first}-{self.last}"


class HashSplit(Split):
    """The ``part`` ("train" or "val") of :func:`split_files` with ``val_fraction`` and ``seed``."""

    def __init__(self, part: str, val_fraction: float, seed: int = 0):
        if part not in ("train", "val"):
            raise DataError(f"a hash split part is 'train' or 'val', got {part!r}")
        if not 0.0 <= float(val_fraction) <= 1.0:
            raise DataError(f"val_fraction must be in [0, 1], got {val_fraction}")
        self.part, self.val_fraction, self.seed = part, float(val_fraction), int(seed)

    def select(self, names):
        is_val = _val_mask(names, self.val_fraction, self.seed)
        want = self.part == "val"
        return [i for i, v in enumerate(is_val) if v == want]

    @property
    def spec(self):
        frac = f"{self.val_fraction:g}"
        return f"{self.part}:{frac}" if self.seed == 0 else f"{self.part}:{frac},{self.seed}"


class ChainSplit(Split):
    """Splits applied left to right, each to what the previous one selected."""

    def __init__(self, splits: list[Split]):
        self.splits = list(splits)

    def select(self, names):
        idx = list(range(len(names)))
        for s in self.splits:
            idx = [idx[j] for j in s.select([names[i] for i in idx])]
        return idx

    @property
    def spec(self):
        return "+".join(s.spec for s in self.splits) or "all"


def _val_mask(names: Sequence, val_fraction: float, seed: int) -> list[bool]:
    units = [hash_unit(n, seed) for n in names]
    mask = [u < val_fraction for u in units]
    n = len(units)
    # Tiny lists: never leave a side empty when the fraction asks for both sides.
    if n >= 2 and 0.0 < val_fraction < 1.0:
        if not any(mask):
            mask[min(range(n), key=units.__getitem__)] = True
        elif all(mask):
            mask[max(range(n), key=units.__getitem__)] = False
    return mask


def split_files(files: Sequence[T], val_fraction: float, seed: int = 0) -> tuple[list[T], list[T]]:
    """Split ``files`` into (train, val) by a seeded hash of each name, keeping the input order.

    A file goes to validation when ``hash_unit(name, seed) < val_fraction``, so about
    ``val_fraction`` of the files land there and each file's side depends only on its name and
    the seed (not on the order or on the other files). With two or more files and
    ``0 < val_fraction < 1`` neither side is left empty. Names are compared in POSIX form, so pass
    paths relative to the dataset root to get the same split wherever the data lives.
    """
    if not 0.0 <= float(val_fraction) <= 1.0:
        raise DataError(f"val_fraction must be in [0, 1], got {val_fraction}")
    mask = _val_mask(files, float(val_fraction), seed)
    train = [f for f, v in zip(files, mask) if not v]
    val = [f for f, v in zip(files, mask) if v]
    return train, val


# --------------------------------------------------------------------------------------------
# registry and parser

# name → Split; the built-in ones are added below, the mesh splits by metasparse.modalities.grids.
SPLITS: Registry[Split] = Registry("split")


def register_split(name: str, split: Split | str) -> None:
    """Register a named split (a :class:`Split` or a spec string)."""
    SPLITS.add(name, parse_split(split) if isinstance(split, str) else split)


register_split("all", AllSplit())
register_split("celeba_train", NumberRangeSplit(33, 8000))
register_split("celeba_test", NumberRangeSplit(8001, 9000))
register_split("celeba_sample", NumberRangeSplit(1, 32))


def available_splits() -> list[str]:
    return sorted(SPLITS) + ["first:N", "last:N", "slice:A:B", "range:A-B", "train:F[,SEED]", "val:F[,SEED]"]


def _int(text: str, spec: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise DataError(f"bad number {text.strip()!r} in split {spec!r}") from None


def _parse_one(text: str, spec: str) -> Split:
    text = text.strip()
    name, sep, args = text.partition(":")
    name = name.strip().lower()
    if not sep:
        if name in SPLITS:
            return SPLITS[name]
        raise DataError(f"unknown split {text!r} in {spec!r}; available: {', '.join(available_splits())}")
    if name == "first":
        return FirstSplit(_int(args, spec))
    if name == "last":
        return LastSplit(_int(args, spec))
    if name == "slice":
        parts = args.split(":")
        if len(parts) != 2:
            raise DataError(f"bad slice {text!r} in {spec!r}: expected slice:START:STOP")
        start, stop = (None if not p.strip() else _int(p, spec) for p in parts)
        return SliceSplit(start, stop)
    if name == "range":
        m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", args)
        if not m:
            raise DataError(f"bad range {text!r} in {spec!r}: expected range:FIRST-LAST, e.g. range:33-8000")
        return NumberRangeSplit(int(m.group(1)), int(m.group(2)))
    if name in ("train", "val"):
        parts = args.split(",")
        if len(parts) > 2:
            raise DataError(f"bad hash split {text!r} in {spec!r}: expected {name}:FRACTION[,SEED]")
        try:
            frac = float(parts[0])
        except ValueError:
            raise DataError(f"bad fraction {parts[0]!r} in split {spec!r}") from None
        seed = _int(parts[1], spec) if len(parts) == 2 else 0
        return HashSplit(name, frac, seed)
    raise DataError(f"unknown split {text!r} in {spec!r}; available: {', '.join(available_splits())}")


def parse_split(spec: str | Split | None) -> Split:
    """A :class:`Split` from a spec string (see the module docstring); ``None`` means all."""
    if spec is None:
        return AllSplit()
    if isinstance(spec, Split):
        return spec
    if not isinstance(spec, str):
        raise DataError(f"a split must be a string or a Split, got {type(spec).__name__}")
    parts = [p for p in spec.split("+") if p.strip()]
    if not parts:
        return AllSplit()
    splits = [_parse_one(p, spec) for p in parts]
    return splits[0] if len(splits) == 1 else ChainSplit(splits)


def apply_split(spec: str | Split | None, names: Sequence[T]) -> list[int]:
    """Indices of ``names`` selected by ``spec`` (in the input order)."""
    return parse_split(spec).select(names)
