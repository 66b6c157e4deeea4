"""The one experiment harness: train-or-resume, cached points, and the written outputs.

Every experiment family (Meta-SparseINR's figures, its variants, MSCN's) runs through a ``Harness``:

* ``signals(DataConfig)`` loads a data set once per harness. The configs are frozen dataclasses, so
  two runs that train on the same data share one loaded set, whatever object asked for it.
* ``train(config, run_dir)`` meta-trains a ``Trainer`` run directory, resuming its checkpoint when
  there is one, so re-running an experiment continues where it stopped.
* ``cached(path, compute)`` evaluates a point once and keeps it as JSON.
* ``write_outputs(stem, table, document, figure)`` writes ``stem.csv``, ``stem.json`` and ``stem.png``,
  each atomically (an interrupted run never leaves a half-written file).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from metasparse.config import DataConfig, RunConfig
from metasparse.data.signals import SignalSet
from metasparse.modalities.loading import BatchSource, load_signal_set
from metasparse.training.algorithm1 import total_steps
from metasparse.training.trainer import Trainer
from metasparse.utils.fileio import save_figure, write_atomic

T = TypeVar("T")

FIGURE_DPI = 120


def _identity(value: Any) -> Any:
    return value


def table_text(rows: Sequence[dict]) -> str:
    """``rows`` as CSV text, the columns of the first row in their order."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class Harness:
    """Shared state of one experiment run: its output folder, device, log and loaded data sets."""

    def __init__(self, out: Path, device: torch.device, log: Callable[[str], None] = lambda s: None) -> None:
        self.out = Path(out)
        self.device = torch.device(device)
        self.log = log
        self._signals: dict[DataConfig, SignalSet] = {}

    def signals(self, config: DataConfig) -> SignalSet:
        if config not in self._signals:
            self._signals[config] = load_signal_set(config)
        return self._signals[config]

    def train(self, config: RunConfig, run_dir: Path) -> Trainer:
        """Meta-train ``config`` in ``run_dir`` to its last step, resuming a checkpoint left there."""
        run_dir.mkdir(parents=True, exist_ok=True)
        source = BatchSource(config.data, self.device, signals=self.signals(config.data))
        trainer = Trainer(config, run_dir, source=source, device=self.device)
        if trainer.try_resume():
            self.log(f"  resumed {run_dir.name} at step {trainer.step}")
        write_atomic(run_dir / "config.json", config.to_json().encode())
        if trainer.step < total_steps(config):
            self.log(f"  meta-training {run_dir.name}: {total_steps(config) - trainer.step} steps")
            trainer.run()
        return trainer

    def cached(
        self,
        path: Path,
        compute: Callable[[], T],
        load: Callable[[Any], T] = _identity,
        dump: Callable[[T], Any] = _identity,
        computed: Callable[[T], str] | None = None,
    ) -> T:
        """The value kept in ``path`` (JSON) or, when there is none yet, ``compute()`` stored there;
        ``computed(value)`` is the log line of a freshly computed value."""
        if path.exists():
            return load(json.loads(path.read_text()))
        value = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(dump(value), indent=1).encode())
        if computed is not None:
            self.log(computed(value))
        return value

    def write_outputs(self, stem: str, table: Sequence[dict], document: dict, figure, dpi: int = FIGURE_DPI,
                      indent: int = 1) -> list[Path]:
        """``stem.csv`` (the ``table`` rows), ``stem.json`` (``document``) and ``stem.png`` (a
        ``matplotlib.figure.Figure``) under ``out``."""
        csv_path, json_path, png_path = (self.out / f"{stem}.{suffix}" for suffix in ("csv", "json", "png"))
        write_atomic(csv_path, table_text(table).encode())
        write_atomic(json_path, json.dumps(document, indent=indent).encode())
        save_figure(figure, png_path, dpi=dpi)
        return [csv_path, json_path, png_path]


class UsesHarness:
    """For an experiment's context that holds a ``harness``: its device and log, read through."""

    harness: Harness

    @property
    def device(self) -> torch.device:
        return self.harness.device

    @property
    def log(self) -> Callable[[str], None]:
        return self.harness.log
