"""The ``metasparse`` command line.

Every user-facing failure (bad data, wrong model file, bad option) is one line on stderr and a
non-zero exit: 1 for errors in the inputs, 2 for usage errors, 130 for Ctrl-C.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from pathlib import Path
from typing import Literal

import typer
from rich.console import Console
from rich.table import Table

from metasparse.errors import MetasparseError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Meta-learned sparse implicit neural representations (Meta-SparseINR, MSCN) and a codec built on them.",
)
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
    import torch

    try:
        torch.device(value)
    except (RuntimeError, ValueError):
        raise typer.BadParameter(f"{value!r} is not a device; use cpu, cuda, cuda:N or auto") from None
    return value


def _check_creatable(path: Path, what: str) -> None:
    """The nearest existing folder above ``path`` must be a folder this process may write in."""
    existing = path.parent
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise MetasparseError(f"{what} {path} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
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


@app.callback()
def _global_options(
    threads: int | None = typer.Option(
        None, "--threads", min=1,
        help="CPU threads for torch (1 is often fastest on a busy or 2-core machine)",
    ),
) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _progress(disable: bool = False):
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


def resolve_data_path(path: str, data_root: Path | None) -> str:
    if path in ("samples", "synthetic") or Path(path).is_absolute() or data_root is None:
        return path
    return str(data_root / path)


@app.command()
def presets() -> None:
    """List the named run presets."""
    from metasparse.presets import list_presets

    found = list_presets()
    table = Table(title="presets (metasparse train PRESET)")
    # A name is what people copy into `metasparse train`: never fold or truncate it.
    table.add_column("name", style="bold", no_wrap=True, min_width=max(len(p.name) for p in found))
    table.add_column("model")
    table.add_column("problem", no_wrap=True)
    table.add_column("steps", justify="right", no_wrap=True)
    table.add_column("description")
    for p in found:
        m = p.model
        steps = p.train.steps + p.prune.rounds * p.prune.steps_per_round
        table.add_row(p.name, f"{m.kind} {m.depth}x{m.width} w0={m.w0:g}", p.problem.kind, f"{steps:,}", p.description)
    out.print(table)


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
    import time

    from metasparse import config as cfgmod
    from metasparse.training import distributed
    from metasparse.utils.fileio import write_atomic
    from metasparse.presets import get_preset
    from metasparse.training.trainer import Trainer, total_steps

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
    config = cfgmod.apply_overrides(config, [f"data.path={json.dumps(resolve_data_path(config.data.path, data_root))}"])
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
    deadline = time.monotonic() + time_budget * 60 if time_budget else None
    with _progress(disable=not world.is_main) as bar:
        task = bar.add_task("meta-training", total=end, completed=trainer.step, status="")

        def on_log(step, entry):
            status = f"round {entry['round']}  train PSNR {entry['psnr']:.2f} dB"
            bar.update(task, completed=step, status=status)
            if not console.is_terminal:  # logs and CI get plain lines instead of a redrawn bar
                say(f"step {step:,}/{end:,}  {status}  ({entry['seconds']:.0f} s)")

        while trainer.step < end:
            chunk = config.train.log_every
            trainer.run(max_steps=chunk, progress=on_log)
            bar.update(task, completed=trainer.step)
            # Rank 0's clock decides, so that no rank waits in a collective for one that stopped.
            if deadline is not None and distributed.agree(time.monotonic() > deadline):
                trainer.save_checkpoint()
                trainer.save_model(run_dir / "model.safetensors")
                say(f"time budget reached at step {trainer.step:,}; re-run the command to continue")
                break
    if trainer.step == 0:
        trainer.save_checkpoint()
        trainer.save_model(run_dir / "model.safetensors")
    distributed.shutdown()
    if not world.is_main:
        return
    last = trainer.history[-1] if trainer.history else None
    summary = f"done: {trainer.step:,} steps"
    if last:
        summary += f", last train PSNR after {config.meta.inner_steps} inner steps {last['psnr']:.2f} dB"
    console.print(summary)
    console.print(f"model: {run_dir / 'model.safetensors'}")
    if evaluate_after and config.val_data is not None:
        _evaluate(run_dir / "model.safetensors", config.val_data.path, run_dir / "eval", config=config, device=dev)


def _evaluate(model_path: Path, data: str, out_dir: Path, config=None, device=None, fit=None, limit=None,
              transform=None, split=None, grid: Path | None = None):
    from dataclasses import replace

    from metasparse.config import DataConfig
    from metasparse.modalities.loading import load_signal_set
    from metasparse.evaluation import evaluate, write_report
    from metasparse.modalities.base import get_modality
    from metasparse.training.trainer import MetaModel

    model = MetaModel.load(model_path, device="cpu")
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
    with _progress() as bar:
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

    from metasparse.training.trainer import MetaModel, resolve_device

    out_dir = out_dir or model.parent / "eval"
    check_output_folder(out_dir)
    if grid is not None:
        check_output_file(grid, "--grid image")
    cfg = MetaModel.load(model).config
    fit = cfg.fit
    for key, value in (("steps", steps), ("lr", lr), ("optimizer", optimizer), ("ema_decay", ema)):
        if value is not None:
            fit = replace(fit, **{key: value})
    _evaluate(model, data, out_dir, fit=fit, limit=limit, transform=transform, split=split,
              grid=grid, device=resolve_device(device))


# Commands contributed by other modules register themselves on import.
for _module in ("metasparse.experiments.bench", "metasparse.cli.experiment", "metasparse.cli.codec", "metasparse.training.distributed"):
    if importlib.util.find_spec(_module) is not None:
        importlib.import_module(_module).register(app)


def _program_name() -> str:
    """What the usage line calls the program: ``python -m metasparse.cli`` when run that way."""
    started_as = sys.argv[0] if sys.argv else ""
    as_module = started_as.endswith(".py") and Path(started_as).resolve() == Path(__file__).resolve()
    return "python -m metasparse.cli" if as_module else "metasparse"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    # The command is run here rather than through ``app()``: in its non-standalone mode typer turns
    # Ctrl-C into a returned exit code, which would lose the message below.
    try:
        command = typer.main.get_command(app)
        with command.make_context(_program_name(), args) as ctx:
            command.invoke(ctx)
    except typer.Exit as e:  # --help, and commands that stop early on purpose
        sys.exit(e.exit_code)
    except (typer.Abort, EOFError):
        console.print("aborted")
        sys.exit(130)
    except typer.TyperException as e:  # usage errors (exit 2, with the usage line) and typer's own errors
        if hasattr(e, "show"):
            e.show()
        else:
            console.print(f"error: {e.format_message()}", markup=False, highlight=False)
        sys.exit(e.exit_code)
    except BrokenPipeError:  # `metasparse ... | head`: the reader left; nothing more to say to it
        # The recipe of Python's signal docs: the flush at exit would fail on the closed pipe again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout without a file descriptor has nothing to flush there
            pass
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted (the last checkpoint is kept; re-run the command to resume)")
        sys.exit(130)
    except MetasparseError as e:
        console.print(f"error: {e}", markup=False, highlight=False)
        sys.exit(1)
    except FloatingPointError as e:
        console.print(f"error: {e}", markup=False, highlight=False)
        sys.exit(1)
    except torch_oom_errors() as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        console.print(f"error: out of memory ({first}); use a smaller batch", markup=False, highlight=False)
        sys.exit(1)
    except Exception as e:  # a bug, not a user error: still one line, the traceback on request
        if os.environ.get("METASPARSE_DEBUG"):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        console.print(f"internal error: {type(e).__name__}: {first} (set METASPARSE_DEBUG=1 for the traceback)",
                      markup=False, highlight=False)
        sys.exit(3)


def torch_oom_errors():
    import torch

    return (torch.OutOfMemoryError, MemoryError)


if __name__ == "__main__":
    main()
