"""``metasparse train PRESET``: meta-train a model (and evaluate it on its validation data)."""

from __future__ import annotations

from pathlib import Path

import typer

from metasparse.cli.app import app
from metasparse.cli.console import (
    check_output_folder,
    console,
    device_name,
    evaluate_and_show,
    finite_positive,
    progress,
    resolve_data_path,
)
from metasparse.errors import MetasparseError


@app.command()
def train(
    preset: str = typer.Argument(..., help="preset name (see `metasparse presets`) or a run's config.json"),
    data: str | None = typer.Option(None, "--data", help="training data: folder, file, .npz or 'samples'"),
    val_data: str | None = typer.Option(None, "--val-data", help="validation data evaluated at the end"),
    data_root: Path | None = typer.Option(None, "--data-root", help="folder that preset data paths are relative to"),
    out_dir: Path | None = typer.Option(None, "--out", "-o", help="run directory (default runs/PRESET)"),
    steps: int | None = typer.Option(
        None, "--steps", min=0, help="outer steps before pruning (overrides the preset)"
    ),
    seed: int | None = typer.Option(None, "--seed", min=0),
    device: str | None = typer.Option(
        None, "--device", callback=device_name, help="cpu, cuda, cuda:1 or auto"
    ),
    overrides: list[str] = typer.Option([], "--set", help="override a config field: section.field=value"),
    fresh: bool = typer.Option(False, "--fresh", help="ignore an existing checkpoint in the run directory"),
    time_budget: float | None = typer.Option(
        None, "--time-budget", callback=finite_positive, help="stop (and checkpoint) after this many minutes"
    ),
    evaluate_after: bool = typer.Option(True, "--evaluate/--no-evaluate", help="fit the validation data at the end"),
) -> None:
    """Meta-train a model; re-running the same command resumes from the last checkpoint.

    Under torchrun the outer batch is split across the processes (docs/distributed.md).
    """
    import json
    import math
    import time

    from metasparse import config as cfgmod
    from metasparse.presets import get_preset
    from metasparse.training import distributed
    from metasparse.training.algorithm1 import total_steps
    from metasparse.training.trainer import Trainer
    from metasparse.utils.fileio import write_atomic
    from metasparse.viz.curves import save_training_curve

    if preset.endswith(".json"):
        p = Path(preset)
        if not p.is_file():
            raise MetasparseError(f"config file not found: {p}" if not p.exists() else f"{p} is not a file")
        try:
            fields = json.loads(p.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise MetasparseError(f"{p} is not valid JSON ({e})") from None
        if not isinstance(fields, dict):
            raise MetasparseError(f"{p} is not a run configuration (a JSON object of sections)")
        config = cfgmod.RunConfig.from_dict(fields)
    else:
        config = get_preset(preset)
    sets = list(overrides)
    if data is not None:
        sets.append(f"data.path={json.dumps(data)}")
    if val_data is not None:
        sets.append(f"val_data.path={json.dumps(val_data)}")
    if steps is not None:
        sets.append(f"train.steps={steps}")
    if seed is not None:
        sets.append(f"train.seed={seed}")
    if device is not None:
        sets.append(f"train.device={json.dumps(device)}")
    config = cfgmod.apply_overrides(config, sets)
    config = cfgmod.apply_overrides(config, [
        f"data.path={json.dumps(resolve_data_path(config.data.path, data_root))}",
        f"data.extra_paths={json.dumps([resolve_data_path(p, data_root) for p in config.data.extra_paths])}",
    ])
    if config.val_data is not None:
        config = cfgmod.apply_overrides(
            config, [f"val_data.path={json.dumps(resolve_data_path(config.val_data.path, data_root))}"]
        )
    run_dir = out_dir or Path("runs") / config.name
    check_output_folder(run_dir, "run directory")
    world, dev = distributed.init_from_env(config.train.device)  # one process unless started by torchrun
    say = console.print if world.is_main else (lambda *args, **kwargs: None)
    ranks = f" x {world.size} process{'es' if world.size > 1 else ''} ({world.backend})" if world.distributed else ""
    say(f"[bold]metasparse train[/] {config.name} on {dev}{ranks} → {run_dir}")
    say(f"loading {config.data.path} …")
    trainer = Trainer(config, run_dir, device=dev, log=say)
    say(f"{len(trainer.source)} training signals, grid {trainer.source.grid_shape}")
    if fresh:
        distributed.main_only(trainer.checkpoint_path.unlink, missing_ok=True)
    if trainer.try_resume():
        say(f"resumed from step {trainer.step:,} ({trainer.checkpoint_path})")
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run_dir / "config.json", config.to_json().encode())
    end = total_steps(config)
    deadline = time.monotonic() + time_budget * 60 if time_budget else math.inf
    with progress(disable=not world.is_main) as bar:
        task = bar.add_task("meta-training", total=end, completed=trainer.step, status="")

        def on_log(step, entry):
            status = f"round {entry['round']}  train PSNR {entry['psnr']:.2f} dB"
            bar.update(task, completed=step, status=status)
            if not console.is_terminal:  # logs and CI get plain lines instead of a redrawn bar
                say(f"step {step:,}/{end:,}  {status}  ({entry['seconds']:.0f} s)")

        trainer.run(progress=on_log, deadline=deadline)
        bar.update(task, completed=trainer.step)
    if time_budget and trainer.step < end:
        say(f"time budget reached at step {trainer.step:,}; re-run the command to continue")
    distributed.shutdown()
    if not world.is_main:
        return
    last = trainer.history[-1] if trainer.history else None
    summary = f"done: {trainer.step:,} steps"
    if last:
        summary += f", last train PSNR after {config.meta.inner_steps} inner steps {last['psnr']:.2f} dB"
    console.print(summary)
    console.print(f"model: {run_dir / 'model.safetensors'}")
    curve = save_training_curve(trainer.history, run_dir, f"{config.name}: {config.model.depth}x{config.model.width} "
                                f"{config.model.kind}, batch {config.meta.batch_size}",
                                f"train PSNR after {config.meta.inner_steps} inner steps (dB)")
    if curve:
        console.print(f"curve: {curve[1]}")
    if evaluate_after and config.val_data is not None:
        evaluate_and_show(run_dir / "model.safetensors", config.val_data.path, run_dir / "eval", config=config,
                          device=dev)
