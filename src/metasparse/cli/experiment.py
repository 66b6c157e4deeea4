"""``metasparse experiment NAME``: run (or resume) a paper figure at a chosen scale."""

from __future__ import annotations

from pathlib import Path

import typer


def known_experiments() -> dict[str, dict]:
    """Every experiment name with the scales it runs at."""
    from metasparse.experiments.mscn import MSCN_EXPERIMENTS, MSCN_SCALES
    from metasparse.experiments.runner import EXPERIMENTS, SCALES
    from metasparse.experiments.variants import TICKET_SCALES, VARIANT_EXPERIMENTS

    known = {name: SCALES for name in EXPERIMENTS}
    known.update({name: MSCN_SCALES for name in MSCN_EXPERIMENTS})
    for name in VARIANT_EXPERIMENTS:
        known[name] = TICKET_SCALES if name == "winning-ticket" else SCALES
    return known


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


def register(app) -> None:
    from metasparse.cli import device_name

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

        from metasparse.utils.device import resolve_device
        from metasparse.experiments.mscn import MSCN_EXPERIMENTS, run_mscn_experiment
        from metasparse.experiments.runner import EXPERIMENTS, SCALES, highest_sparsity_summary, run_experiment
        from metasparse.experiments.variants import TICKET_SCALES, VARIANT_EXPERIMENTS, run_variant_experiment, summary

        out = Console(emoji=False)
        err = Console(stderr=True, emoji=False)
        if list_ or name is None:
            t = Table(title="experiments (metasparse experiment NAME --scale S --data PATH)")
            t.add_column("name", style="bold")
            t.add_column("description")
            for e in EXPERIMENTS.values():
                t.add_row(e.name, e.description)
            for mscn_name, description in MSCN_EXPERIMENTS.items():
                t.add_row(mscn_name, description + " (--data: CelebA half-res faces)")
            for variant_name, description in VARIANT_EXPERIMENTS.items():
                t.add_row(variant_name, description)
            out.print(t)
            s = Table(title="scales")
            for col in ("scale", "image", "network", "dense + rounds x steps", "fit steps", "seeds"):
                s.add_column(col)
            for sc in SCALES.values():
                s.add_row(sc.name, f"{sc.size}x{sc.size}", f"{sc.depth}x{sc.width} w0={sc.w0:g}",
                          f"{sc.dense_steps:,} + {sc.rounds} x {sc.steps_per_round:,}", str(sc.fit_steps),
                          str(sc.seeds))
            out.print(s)
            w = Table(title="winning-ticket scales (single photos, no meta-learning)")
            for col in ("scale", "crop", "network", "Adam steps", "IMP rounds", "photos"):
                w.add_column(col)
            for ts in TICKET_SCALES.values():
                w.add_row(ts.name, f"{ts.size}x{ts.size}", f"{ts.depth}x{ts.width}", f"{ts.steps:,}", str(ts.rounds),
                          str(ts.images))
            out.print(w)
            return
        check_experiment(name, scale)
        if data is None:
            ctx.fail("Missing option '--data' (the training images of the experiment).")
        if threads:
            torch.set_num_threads(threads)
        run_dir = Path(out_dir) if out_dir else Path("runs") / "experiments" / name
        err.print(f"[bold]metasparse experiment[/] {name} at the {scale} scale → {run_dir}")
        if name in MSCN_EXPERIMENTS:
            files = run_mscn_experiment(name, scale, data, run_dir, hq_data=hq_data, device=resolve_device(device),
                                        log=lambda s: err.print(s, markup=False, highlight=False))
            for f in files:
                out.print(str(f))
            return
        if name in VARIANT_EXPERIMENTS:
            rows, files = run_variant_experiment(name, scale, data, run_dir, val_data=val_data, data2=data2, seeds=seeds,
                                                 device=resolve_device(device), log=err.print)
            shown = summary(name, rows)
            t = Table(title=name)
            for col in shown[0]:
                t.add_column(col)
            for r in shown:
                t.add_row(*(f"{v:,.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v) for v in r.values()))
            out.print(t)
            for f in files:
                out.print(str(f))
            return
        rows, files = run_experiment(name, scale, data, run_dir, val_data=val_data, seeds=seeds,
                                     device=resolve_device(device), log=err.print)
        t = Table(title=f"{name}: highest sparsity")
        for col in ("method", "non-zero weights", "biases", "PSNR (dB)", "after 2 steps"):
            t.add_column(col)
        for m, r in highest_sparsity_summary(rows).items():
            t.add_row(m, f"{r['nonzero_weights']:,.0f}", str(r["biases"]), f"{r['psnr_mean']:.2f} ± {r['psnr_std']:.2f}",
                      f"{r['psnr_2steps_mean']:.2f}")
        out.print(t)
        for f in files:
            out.print(str(f))
