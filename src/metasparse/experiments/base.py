"""The experiments registry: every named experiment with its description, scales and run function.

Each family module (``runner``, ``mscn``, ``variants``) adds its experiments here; the package
``__init__`` imports the families in a fixed order, so the registry is complete (and listed in the
same order) whichever experiment module is imported first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metasparse.utils.registry import Registry


@dataclass(frozen=True)
class Request:
    """What ``metasparse experiment`` passes to an experiment (the command's options)."""

    scale: str
    data: str
    out: Path
    device: Any = "cpu"
    val_data: str | None = None
    hq_data: str | None = None
    data2: str | None = None
    seeds: int | None = None
    log: Callable[[str], None] = lambda s: None


@dataclass(frozen=True)
class SummaryTable:
    """The table the command prints after a run: a title, column headers, rows of cell text."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]


@dataclass(frozen=True)
class Outcome:
    rows: list[dict]
    files: list[Path]
    table: SummaryTable | None = None


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    scales: Mapping[str, Any]  # the family's scale table (tests add scales to it with monkeypatch.setitem)
    run: Callable[[Request], Outcome]
    data_note: str = ""  # shown after the description in the listing (what --data must be)

    def listing(self) -> str:
        return self.description + self.data_note


EXPERIMENTS: Registry[Experiment] = Registry("experiment", "metasparse experiment --list")
