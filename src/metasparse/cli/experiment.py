"""``metasparse experiment NAME``: run (or resume) a paper experiment at a chosen scale.

The experiments and their scales come from ``metasparse.experiments.base.EXPERIMENTS``; nothing here
imports torch or the experiments until the command runs."""

from __future__ import annotations

from pathlib import Path

import typer


def known_experiments() -> dict[str, dict]:
    """Every experiment name with the scales it runs at."""
    from metasparse.experiments.base import EXPERIMENTS

    return {name: experiment.scales for name, experiment in EXPERIMENTS.items()}


def check_experiment(name: str, scale: str) -> None:
    """An unknown name or scale is refused before anything runs, naming what there is."""
    from metasparse.errors import ConfigError

    known = known_experiments()
    if name not in known:
        raise ConfigError(
            f"unknown experiment {name!r}; available: {', '.join(known)} (metasparse experiment --list)"
        )
    if scale not in known[name]:
        raise ConfigError(f"unknown scale {scale!r} for {name}; available: {', '.join(known[name])}")


def _print_listing(out) -> None:
    from rich.table import Table

    from metasparse.experiments.base import EXPERIMENTS
    from metasparse.experiments.runner import SCALES
    from metasparse.experiments.variants import TICKET_SCALES

    t = Table(title="experiments (metasparse experiment NAME --scale S --data PATH)")
    t.add_column("name", style="bold")
    t.add_column("description")
    for experiment in EXPERIMENTS.values():
        t.add_row(experiment.name, experiment.listing())
    out.print(t)
    s = Table(title="scales")
    for col in ("scale", "image", "network", "dense + rounds x steps", "fit steps", "seeds"):
        s.add_column(col)
    for sc in SCALES.values():
        s.add_row(sc.name, f"{sc.size}x{sc.size}", f"{sc.depth}x{sc.width} w0={sc.w0:g}",
                  f"{sc.dense_steps:,} + {sc.rounds} x {sc.steps_per_round:,}", str(sc.fit_steps), str(sc.seeds))
    out.print(s)
    w = Table(title="winning-ticket scales (single photos, no meta-learning)")
    for col in ("scale", "crop", "network", "Adam steps", "IMP rounds", "photos"):
        w.add_column(col)
    for ts in TICKET_SCALES.values():
        w.add_row(ts.name, f"{ts.size}x{ts.size}", f"{ts.depth}x{ts.width}", f"{ts.steps:,}", str(ts.rounds),
                  str(ts.images))
    out.print(w)


def register(app) -> None:
    from metasparse.cli.console import device_name

    @app.command()
    def experiment(
        ctx: typer.Context,
        name: str | None = typer.Argument(None, help="experiment name (see --list)"),
        scale: str = typer.Option("cpu", "--scale", help="cpu | cpu-deep | gpu | paper (MSCN experiments: cpu | gpu | paper)"),
        data: str | None = typer.Option(None, "--data", help="training images (folder)"),
        val_data: str | None = typer.Option(
            None, "--val-data", help="test images (default: the sibling 'val' folder of a '.../train' --data)"
        ),
        out_dir: str | None = typer.Option(None, "--out", "-o", help="output folder (default runs/experiments/NAME)"),
        seeds: int | None = typer.Option(
            None, "--seeds", min=1, help="number of seeds (default: the scale's)"
        ),
        device: str = typer.Option("auto", "--device", callback=device_name, help="cpu, cuda or auto"),
        threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads for torch"),
        list_: bool = typer.Option(False, "--list", help="list the experiments and scales"),
        hq_data: str | None = typer.Option(
            None, "--hq-data", help="MSCN experiments: CelebA-HQ faces as a second test set"
        ),
        data2: str | None = typer.Option(
            None, "--data2", help="cross-dataset: the CelebA faces folder (img_align_celeba_halfres) beside --data"
        ),
    ) -> None:
        """Run a paper experiment (see --list); re-running the same command resumes it."""
        import torch
        from rich.console import Console
        from rich.table import Table

        from metasparse.experiments.base import EXPERIMENTS, Request
        from metasparse.utils.device import resolve_device

        out = Console(emoji=False)
        err = Console(stderr=True, emoji=False)
        if list_ or name is None:
            _print_listing(out)
            return
        check_experiment(name, scale)
        if data is None:
            ctx.fail("Missing option '--data' (the training images of the experiment).")
        if threads:
            torch.set_num_threads(threads)
        run_dir = Path(out_dir) if out_dir else Path("runs") / "experiments" / name
        err.print(f"[bold]metasparse experiment[/] {name} at the {scale} scale → {run_dir}")
        request = Request(scale=scale, data=data, out=run_dir, device=resolve_device(device), val_data=val_data,
                          hq_data=hq_data, data2=data2, seeds=seeds,
                          log=lambda line: err.print(line, markup=False, highlight=False))
        outcome = EXPERIMENTS.get(name).run(request)
        if outcome.table is not None:
            t = Table(title=outcome.table.title)
            for col in outcome.table.columns:
                t.add_column(col)
            for row in outcome.table.rows:
                t.add_row(*row)
            out.print(t)
        for f in outcome.files:
            out.print(str(f))
