"""``metasparse bench``: time the meta-learning step and the fitting against naive loops.

The measuring lives in ``metasparse.experiments.bench``; it (and torch) is imported only when the
command runs, so ``metasparse --help`` stays fast."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app) -> None:
    from metasparse.cli.console import device_name, finite_positive

    @app.command()
    def bench(
        size: int = typer.Option(178, "--size", min=1, help="image side (the paper: 178)"),
        width: int = typer.Option(256, "--width", min=1),
        depth: int = typer.Option(4, "--depth", min=1),
        w0: float = typer.Option(200.0, "--w0", callback=finite_positive),
        batch: int = typer.Option(3, "--batch", min=1, help="signals per outer step"),
        inner_steps: int = typer.Option(2, "--inner-steps", min=1),
        repeats: int = typer.Option(10, "--repeats", min=1),
        fit_signals_count: int = typer.Option(8, "--fit-signals", min=1),
        fit_steps: int = typer.Option(100, "--fit-steps", min=0),
        compile: bool | None = typer.Option(
            None, "--compile/--no-compile",
            help="include the torch.compile variants (default: on for paper, off for codec/cpu: 30-60 s each)"),
        device: str = typer.Option("auto", "--device", callback=device_name),
        json_out: Path | None = typer.Option(None, "--json", help="also write the rows as JSON"),
        settings: str = typer.Option(
            "auto", "--settings",
            help="paper (the shape and fit options above apply to it alone), codec and/or cpu (CPU training settings: naive vs "
                 "engine vs fast path, batched fitting, Trainer steps/s); auto: codec,cpu on a CPU, paper on a GPU"),
        trainer_steps: int = typer.Option(10, "--trainer-steps", min=0,
                                          help="codec/cpu: Trainer steps per round (0 skips the Trainer)"),
    ) -> None:
        """Benchmark the meta-learning step and fitting against naive loops (ratios from one run)."""
        from rich.console import Console
        from rich.table import Table

        from metasparse.cli.console import check_output_file
        from metasparse.experiments.bench import (
            format_markdown,
            hardware_description,
            run_fit_bench,
            run_meta_step_bench,
        )
        from metasparse.utils.device import resolve_device
        from metasparse.utils.fileio import write_atomic

        chosen = [name.strip() for name in settings.split(",") if name.strip()]
        unknown = sorted(set(chosen) - {"auto", "paper", "codec", "cpu"})
        if unknown or not chosen:
            raise typer.BadParameter(f"unknown setting(s) {', '.join(unknown) or '(none)'}; "
                                     "expected paper, codec, cpu or auto", param_hint="--settings")
        if json_out is not None:
            check_output_file(json_out, "--json file")
        console = Console(stderr=True, emoji=False)
        dev = resolve_device(device)
        hw = hardware_description(dev)
        console.print(f"[bold]metasparse bench[/] on {hw}")
        if chosen == ["auto"]:
            chosen = ["paper"] if dev.type == "cuda" else ["codec", "cpu"]
        cpu_settings = [name for name in chosen if name in ("codec", "cpu")]
        if cpu_settings:
            import torch

            from metasparse.experiments import cpu_bench

            lines = cpu_bench.run(cpu_settings, repeats, bool(compile), True, trainer_steps,
                                  lambda message: console.print(message, markup=False, highlight=False))
            # These settings always run on the CPU, whatever --device says.
            cpu_hw = hardware_description(torch.device("cpu"))
            print("\n".join([f"CPU benchmark on {cpu_hw}", "", *lines]))
            if json_out is not None and "paper" not in chosen:
                write_atomic(json_out, json.dumps({"hardware": cpu_hw, "markdown": lines}, indent=2).encode())
        if "paper" not in chosen:
            return
        shape = f"SIREN 2→{width}x{depth}→3, w0 {w0:g}, {size}x{size}, {batch} signals, {inner_steps} inner steps"
        rows = run_meta_step_bench(size, width, depth, w0, batch, inner_steps, dev, repeats, 2, compile is not False,
                                   log=console.print)
        fit_rows = run_fit_bench(size, width, depth, w0, fit_signals_count, fit_steps, dev, log=console.print)
        out = Console(emoji=False)
        for title, rs in ((f"outer step (second order): {shape}", rows),
                          (f"fitting: {fit_signals_count} signals x {fit_steps} Adam steps", fit_rows)):
            t = Table(title=title)
            for c in ("variant", "ms", "speed-up", "meta-grad rel. diff", "note"):
                t.add_column(c, justify="right" if c in ("ms", "speed-up") else "left")
            for r in rs:
                t.add_row(r.name, f"{r.ms:.1f}", f"{r.speedup:.2f}x",
                          "" if r.grad_rel_diff is None else f"{r.grad_rel_diff:.1e}", r.note)
            out.print(t)
        # Plain print: markdown that a terminal wraps cannot be pasted into BENCHMARKS.md.
        print(format_markdown(f"{hw}; {shape}", rows))
        print()
        print(format_markdown(f"{hw}; fitting {fit_signals_count} signals x {fit_steps} steps at {size}x{size}",
                              fit_rows))
        if json_out is not None:
            payload = {"hardware": hw, "setting": shape, "meta_step": [r.__dict__ for r in rows],
                       "fit": [r.__dict__ for r in fit_rows]}
            write_atomic(json_out, json.dumps(payload, indent=2).encode())
