"""What every verb shares: the two consoles, the progress bar and the option checks.

Imports only typer, rich and the standard library at module level (``metasparse --help`` stays fast).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import typer
from rich.console import Console

from metasparse.errors import MetasparseError

# Messages quote paths and options verbatim: "slice:A:B" must not become an emoji.
console = Console(stderr=True, soft_wrap=True, emoji=False)
out = Console(soft_wrap=True, emoji=False)


# Option callbacks shared by every command: a value typer parses but no run can use is a usage
# error (exit 2, with the usage line), found before any work starts.


def finite_positive(value: float | None) -> float | None:
    """Learning rates, durations, sizes: ``nan``, ``inf``, zero and negative values are refused."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value:g} is not a finite number greater than 0")
    return value


def decay_rate(value: float | None) -> float | None:
    """An exponential-moving-average decay: in [0, 1)."""
    if value is not None and not 0 <= value < 1:
        raise typer.BadParameter(f"{value:g} is not in [0, 1)")
    return value


def device_name(value: str | None) -> str | None:
    """``auto`` or a torch device string (cpu, cuda, cuda:1, mps ...); whether it exists is checked later."""
    if value is None or value == "auto":
        return value
    from metasparse.utils.device import is_device_name  # torch, only when a device is named

    if not is_device_name(value):
        raise typer.BadParameter(f"{value!r} is not a device; use cpu, cuda, cuda:N or auto")
    return value


def nearest_existing_folder(path: Path) -> tuple[Path, str | None]:
    """The nearest part of ``path`` that exists (the rest would be created), and what stops a write
    there: ``"file"`` (it is not a folder), ``"denied"`` (no permission) or ``None``."""
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return existing, "file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return existing, "denied"
    return existing, None


def _check_creatable(path: Path, what: str) -> None:
    """The nearest existing folder above ``path`` must be a folder this process may write in."""
    existing, problem = nearest_existing_folder(path.parent)
    if problem == "file":
        raise MetasparseError(f"{what} {path} cannot be created: {existing} is a file")
    if problem == "denied":
        raise MetasparseError(f"{what} {path} cannot be written: no permission to write in {existing}")


def check_output_folder(folder: Path, what: str = "output folder") -> None:
    """Refuse, before any work, a folder that cannot be created or written (a file in the way, no
    permission): otherwise the run would fail only when it writes its first result."""
    if folder.exists() and not folder.is_dir():
        raise MetasparseError(f"{what} {folder} is a file, not a folder")
    if folder.is_dir():
        if not os.access(folder, os.W_OK | os.X_OK):
            raise MetasparseError(f"{what} {folder} cannot be written: no permission")
        return
    _check_creatable(folder, what)


def check_output_file(path: Path, what: str = "output file") -> None:
    """As ``check_output_folder``, for a file that will be written."""
    if path.is_dir():
        raise MetasparseError(f"{what} {path} is a folder, not a file")
    _check_creatable(path, what)


def progress(disable: bool = False):
    """A rich progress bar on stderr: description, bar, n/total, elapsed, remaining, a status field."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
        disable=disable,
    )


def say(text: str, to: Console = out) -> None:
    """A line printed verbatim: paths and options are not rich markup."""
    to.print(text, markup=False, highlight=False)


def resolve_data_path(path: str, data_root: Path | None) -> str:
    if path in ("samples", "synthetic") or Path(path).is_absolute() or data_root is None:
        return path
    return str(data_root / path)


def evaluate_and_show(model_path: Path, data: str, out_dir: Path, config=None, device=None, fit=None, limit=None,
                      transform=None, split=None, grid: Path | None = None, trained=None):
    """Fit the model to ``data``, write results.json / per_signal.csv to ``out_dir`` and print the summary.

    Shared by ``train`` (its validation data) and ``evaluate``; ``grid`` also writes the modality's picture.
    ``trained``: the model already loaded from ``model_path``, if the caller has it.
    """
    from dataclasses import replace

    from metasparse.config import DataConfig
    from metasparse.evaluation import evaluate, write_report
    from metasparse.modalities.base import get_modality
    from metasparse.modalities.loading import load_signal_set
    from metasparse.training.model_file import MetaModel

    model = trained if trained is not None else MetaModel.load(model_path, device="cpu")
    config = config or model.config
    data_cfg = config.val_data or DataConfig(modality=config.data.modality)
    data_cfg = replace(data_cfg, path=data)
    if limit is not None:
        data_cfg = replace(data_cfg, limit=limit)
    if transform is not None:
        data_cfg = replace(data_cfg, transform=transform)
    if split is not None:
        data_cfg = replace(data_cfg, split=split)
    signals = load_signal_set(data_cfg)
    fit = fit or config.fit
    with progress() as bar:
        task = bar.add_task(f"fitting {fit.steps} steps", total=len(signals), status="")
        report, result = evaluate(
            model, signals, fit, device, keep_reconstructions=grid is not None,
            progress=lambda n: bar.advance(task, n), model_name=str(model_path), data_name=data,
        )
    write_report(out_dir, report, signals.names)
    nz = f", {report.nonzero_weights:,} non-zero weights (+{report.biases:,} biases)" if report.nonzero_weights else ""
    out.print(
        f"PSNR after {fit.steps} {fit.optimizer} steps on {report.signals} signals: "
        f"[bold]{report.psnr_mean:.2f} ± {report.psnr_std:.2f} dB[/]{nz}  ({report.signals_per_second:.2f} signals/s)"
    )
    if report.metrics:
        out.print("  ".join(f"{k} {v:.4g} ± {report.metrics_std[k]:.2g}" if v is not None else f"{k} n/a"
                            for k, v in report.metrics.items()))
    out.print(f"results: {out_dir / 'results.json'}, {out_dir / 'per_signal.csv'}")
    save = get_modality(signals.modality).save_reconstructions
    if grid is not None and save is not None:
        written = save(signals, result.reconstructions.cpu(), grid)
        out.print(f"originals and reconstructions: {', '.join(str(p) for p in written)}")
    return report


__all__ = ["check_output_file", "check_output_folder", "console", "decay_rate", "device_name",
           "evaluate_and_show", "finite_positive", "out", "progress", "resolve_data_path", "say"]
