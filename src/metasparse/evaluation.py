"""Evaluate a meta-learned model: fit K steps on test signals, report PSNR mean ± std.

PSNR is reported for every modality; a modality's own metrics (voxel accuracy, Chamfer distance,
...; see :mod:`metasparse.modalities.base`) are added under ``metrics``.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from metasparse.config import validate_section
from metasparse.data.signals import SignalSet
from metasparse.errors import DataError
from metasparse.meta.fit import FitConfig, FitResult, fit_signals
from metasparse.modalities.base import get_modality
from metasparse.sparsity.masks import bias_count, kept_weights
from metasparse.training.model_file import MetaModel
from metasparse.utils.fileio import write_atomic


@dataclass
class EvalReport:
    model: str
    data: str
    signals: int
    fit: dict
    psnr_mean: float
    psnr_std: float
    psnr_per_signal: list[float]
    psnr_trajectory_mean: list[float]  # after 0, 1, ..., K steps
    nonzero_weights: int | None
    biases: int | None
    seconds: float
    signals_per_second: float
    # The modality's metrics: mean over signals.
    metrics: dict[str, float | None] = field(default_factory=dict)
    metrics_std: dict[str, float | None] = field(default_factory=dict)
    metrics_per_signal: dict[str, list[float | None]] = field(default_factory=dict)  # None: undefined

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def evaluate(
    model: MetaModel,
    signals: SignalSet,
    fit: FitConfig,
    device: torch.device,
    keep_reconstructions: bool = False,
    progress=None,
    model_name: str = "",
    data_name: str = "",
) -> tuple[EvalReport, FitResult]:
    validate_section(fit, "fit.")  # e.g. --optimizer or --lr: refused before any fitting
    if len(signals) == 0:
        raise DataError("no signals to evaluate on")
    problem = model.problem(device)
    if problem.model.config.in_dim != signals.coord_dim or problem.model.config.out_dim != signals.channels:
        raise DataError(
            f"the model maps {problem.model.config.in_dim}-D coordinates to "
            f"{problem.model.config.out_dim} channels, "
            f"but the data has {signals.coord_dim}-D coordinates and {signals.channels} channels"
        )
    meta = {g: {k: v.to(device) for k, v in d.items()} for g, d in model.meta.items()}
    coords = signals.flat_coords().to(device)
    targets = signals.targets().to(device)
    if not torch.isfinite(targets).all():
        raise DataError("the data contains NaN or infinite values")
    modality = get_modality(signals.modality)
    t0 = time.perf_counter()
    keep = keep_reconstructions or modality.metrics is not None
    result = fit_signals(problem, meta, coords, targets, fit, keep, progress)
    per_signal = result.final_psnr.cpu()
    seconds = time.perf_counter() - t0
    extra = {}
    if modality.metrics is not None:
        extra = modality.metrics(signals.to("cpu"), result.reconstructions.cpu())
    if not keep_reconstructions:
        result.reconstructions = None
    nonzero, biases = count_parameters(model)
    report = EvalReport(
        model=model_name,
        data=data_name,
        signals=len(signals),
        fit=asdict(fit),
        psnr_mean=float(per_signal.mean()),
        psnr_std=float(per_signal.std(unbiased=False)) if len(per_signal) > 1 else 0.0,
        psnr_per_signal=[round(float(v), 4) for v in per_signal],
        psnr_trajectory_mean=[round(float(v), 4) for v in result.psnr_per_step.mean(dim=1).cpu()],
        nonzero_weights=nonzero,
        biases=biases,
        seconds=round(seconds, 3),
        signals_per_second=round(len(signals) / max(seconds, 1e-9), 3),
        **summarise_metrics(extra),
    )
    return report, result


def summarise_metrics(per_signal: dict[str, np.ndarray]) -> dict[str, dict]:
    """Mean and std over the signals where a metric is defined (a Chamfer distance needs a surface)."""
    out: dict[str, dict] = {"metrics": {}, "metrics_std": {}, "metrics_per_signal": {}}
    for name, values in per_signal.items():
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        ok = v[np.isfinite(v)]
        out["metrics"][name] = round(float(ok.mean()), 6) if len(ok) else None
        out["metrics_std"][name] = round(float(ok.std()), 6) if len(ok) else None
        out["metrics_per_signal"][name] = [round(float(x), 6) if np.isfinite(x) else None for x in v]
    return out


def count_parameters(model: MetaModel) -> tuple[int | None, int | None]:
    """Non-zero weights (biases excluded, as the papers count) and the number of biases."""
    theta = model.meta.get("theta")
    if theta is None:
        return None, None
    return kept_weights(theta, model.masks), bias_count(theta)


def write_report(out_dir: Path, report: EvalReport, names: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "results.json", report.to_json().encode())
    buf = io.StringIO()
    w = csv.writer(buf)
    extra = list(report.metrics_per_signal)
    w.writerow(["signal", "psnr_db", *extra])
    for i, p in enumerate(report.psnr_per_signal):
        row = [report.metrics_per_signal[k][i] for k in extra]
        w.writerow([names[i] if i < len(names) else i, p, *["" if v is None else v for v in row]])
    write_atomic(out_dir / "per_signal.csv", buf.getvalue().encode())
