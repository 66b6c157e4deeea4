"""A run's training curve: the history a Trainer logs, as CSV and as a figure."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Sequence
from pathlib import Path

from metasparse.utils.fileio import save_figure, write_atomic

CURVE_FIELDS = ("step", "round", "loss", "psnr", "seconds")


def curve_csv(history: Sequence[dict], fields: Sequence[str] = CURVE_FIELDS) -> str:
    """The logged entries' ``fields`` (by default ``step``, ``round``, ``loss``, ``psnr`` and ``seconds`` as
    the Trainer logs them) as CSV text; fields an entry lacks are left empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def save_training_curve(history: Sequence[dict], folder: str | Path, title: str, ylabel: str,
                        resumed_at: Sequence[int] = (), fields: Sequence[str] = CURVE_FIELDS,
                        ) -> tuple[Path, Path] | None:
    """Write ``curve.csv`` (the entries' ``fields``) and ``curve.png`` into ``folder`` (nothing when nothing
    was logged). Pruning rounds are marked where the round changes; ``resumed_at``: steps where a run was
    resumed."""
    if not history:
        return None
    from matplotlib.figure import Figure

    folder = Path(folder)
    csv_path = write_atomic(folder / "curve.csv", curve_csv(history, fields).encode())
    figure = Figure(figsize=(6.4, 3.6))
    axes = figure.add_subplot()
    axes.plot([e["step"] for e in history], [e["psnr"] for e in history], lw=1.0)
    for before, after in itertools.pairwise(history):
        if after.get("round", 0) != before.get("round", 0):
            axes.axvline(before["step"], color="0.8", lw=0.6)
    for k, step in enumerate(resumed_at):
        axes.axvline(step, color="0.5", ls="--", lw=0.8, label="resumed" if k == 0 else None)
    if resumed_at:
        axes.legend(loc="lower right", fontsize=8)
    axes.set_xlabel("outer step")
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    png_path = save_figure(figure, folder / "curve.png", dpi=120)
    return csv_path, png_path
