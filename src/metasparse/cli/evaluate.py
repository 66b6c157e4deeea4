"""``metasparse evaluate MODEL --data DATA``: fit a trained model to test signals and report PSNR."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from metasparse.cli.app import app
from metasparse.cli.console import (
    check_output_file,
    check_output_folder,
    decay_rate,
    device_name,
    evaluate_and_show,
    finite_positive,
)


@app.command()
def evaluate(
    model: Path = typer.Argument(..., help="a model.safetensors written by `metasparse train`"),
    data: str = typer.Option(..., "--data", help="test data: folder, file, .npz or 'samples'"),
    out_dir: Path | None = typer.Option(None, "--out", "-o", help="where results.json / per_signal.csv go"),
    steps: int | None = typer.Option(
        None, "--steps", min=0, help="fitting steps (default: the model's config)"
    ),
    lr: float | None = typer.Option(None, "--lr", callback=finite_positive),
    optimizer: Literal["adam", "sgd", "inner"] | None = typer.Option(
        None, "--optimizer", help="adam, sgd, or inner (the learned rule)"
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="use the first N signals"),
    transform: str | None = typer.Option(
        None, "--transform", help="e.g. resize_short_crop:200,178; other modalities: options such as size=64"
    ),
    split: str | None = typer.Option(None, "--split"),
    ema: float | None = typer.Option(
        None, "--ema", callback=decay_rate, help="EMA decay of the iterates (MSCN App. D.2)"
    ),
    grid: Path | None = typer.Option(
        None, "--grid", help="write a PNG of originals and reconstructions (3D shapes: and OBJ meshes beside it)"
    ),
    device: str = typer.Option("auto", "--device", callback=device_name),
) -> None:
    """Fit a meta-learned model to test signals and report PSNR mean ± std."""
    from dataclasses import replace

    from metasparse.config import validate_section
    from metasparse.training.model_file import MetaModel
    from metasparse.utils.device import resolve_device

    out_dir = out_dir or model.parent / "eval"
    check_output_folder(out_dir)
    if grid is not None:
        check_output_file(grid, "--grid image")
    trained = MetaModel.load(model)
    fit = trained.config.fit
    for key, value in (("steps", steps), ("lr", lr), ("optimizer", optimizer), ("ema_decay", ema)):
        if value is not None:
            fit = replace(fit, **{key: value})
    validate_section(fit, "fit.")  # before any data is read
    evaluate_and_show(model, data, out_dir, fit=fit, limit=limit, transform=transform, split=split,
                      grid=grid, device=resolve_device(device), trained=trained)
