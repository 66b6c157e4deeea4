"""Everything a lent GPU should measure and train, in one command that fits its time.

    python bench/gpu_campaign.py --out results/gpu-campaign                  # one GPU, at most 8 minutes
    python bench/gpu_campaign.py --out DIR --data photos-subset --budget-minutes 7 --set model.width=96
    python bench/gpu_campaign.py --tiny --out /tmp/campaign                  # every stage on CPU, < 1 minute

Stages, in this order:

1. ``meta-step``: the paper-setting meta-step (178x178, SIREN 4x256, w0 200, batch 3, 2 inner
   steps) as the naive per-signal loop, the ``torch.func`` engine (fp32, and TF32 on a GPU) and the
   fast SIREN path, each meta-gradient compared with the naive loop's
   (``metasparse.experiments.bench``);
2. ``distributed``: ``metasparse train demo`` as one rank under ``torch.distributed.run`` (NCCL on a
   GPU, gloo on CPU), a few outer steps;
3. ``codec``: encode and decode time of the bundled codec on a photo, per quality;
4. ``meta-step-compiled``: the table of stage 1 measured again with the ``torch.compile``'d variants
   added. A stage of its own, and late, because compilation is the slowest and least predictable
   part: if it overruns, the other tables are already written;
5. ``train``: meta-trains ``--preset`` (``codec-photos``; ``--set`` and ``--data`` change it) with
   the rest of the time, then writes the model, its training curve (CSV and PNG) and its config.

Each stage runs in a child process of its own with a time limit: an exception, a crash, a hang or
a broken CUDA context in one stage is recorded in the summary and the next stage still runs. Every
stage's limit is cut so that the whole command ends by ``--budget-minutes`` and training keeps a
quarter of it. After every stage ``summary.json`` and ``summary.md`` are rewritten, so a campaign
killed from outside still leaves what it measured. ``--set`` applies to the training stage only.

Everything lands under ``--out``, small enough to commit: ``summary.{json,md}``, one folder per
stage (tables as JSON/Markdown, the curve as CSV/PNG, the model and its resumable checkpoint) and
``logs/`` (each stage's output). Running the command again with the same ``--out`` resumes the
training from that checkpoint (``--fresh`` starts over); ``--drop-checkpoint`` leaves only the model.

``--tiny`` shrinks every stage (tiny networks, a few steps, scikit-image photos, one gloo rank on
CPU, ``torch.compile`` with the ``aot_eager`` backend instead of inductor's C++ build) so the whole
command is checked in CI before any GPU time is spent on it (tests/integration/test_gpu_campaign.py).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The compiled meta-step is the slowest and least predictable stage (inductor builds kernels for a minute or
# more), so it runs after the quick ones: an overrun then costs training time, not a measurement.
STAGES = ("meta-step", "distributed", "codec", "meta-step-compiled", "train")
TITLES = {
    "meta-step": "Meta-step: naive loop, torch.func engine, fast SIREN path",
    "meta-step-compiled": "Meta-step with torch.compile",
    "distributed": "One-rank distributed training step",
    "codec": "Codec encode/decode speed",
    "train": "Meta-training",
}
# A float32 meta-gradient must match the naive loop's to this relative L2 difference (the issue's
# bound). TF32 keeps 10 mantissa bits (about 5e-4 per product), so TF32 rows get a looser bound.
FP32_TOLERANCE = 1e-5
TF32_TOLERANCE = 1e-2
LOG_TAIL_BYTES = 100_000  # each stage's log is kept to its end: enough to read an error, small to commit
SUMMARY_RESERVE_S = 10.0  # what the parent needs after the last stage (summary files)


@dataclass(frozen=True)
class Scale:
    """The sizes of one kind of campaign: the paper's on a GPU, or tiny ones that check the code on CPU."""

    bench: dict
    bench_repeats: int
    bench_warmup: int
    distributed_steps: int
    distributed_sets: tuple[str, ...]
    codec_image: str
    codec_crop: int | None  # a top-left crop of the photo (tiny: a few patches)
    codec_all_qualities: bool
    codec_repeats: int
    train_sets: tuple[str, ...]
    # Upper limits per stage in seconds; the budget may cut them further.
    limits: dict
    train_grace_s: float  # startup, the chunk that crosses the deadline, and the final save


PAPER = Scale(
    bench={"size": 178, "width": 256, "depth": 4, "w0": 200.0, "batch": 3, "inner_steps": 2},
    bench_repeats=10, bench_warmup=3,
    distributed_steps=20, distributed_sets=(),
    codec_image="astronaut", codec_crop=None, codec_all_qualities=True, codec_repeats=3,
    train_sets=(),
    limits={"meta-step": 75, "distributed": 60, "codec": 45, "meta-step-compiled": 120},
    train_grace_s=40.0,
)
TINY = Scale(
    bench={"size": 16, "width": 16, "depth": 2, "w0": 30.0, "batch": 2, "inner_steps": 1},
    bench_repeats=3, bench_warmup=1,
    distributed_steps=4,
    distributed_sets=("model.width=12", "model.depth=2", "meta.batch_size=2", "train.log_every=2",
                      "train.checkpoint_every=2"),
    codec_image="chelsea", codec_crop=64, codec_all_qualities=False, codec_repeats=1,
    train_sets=("model.width=16", "model.depth=2", "meta.batch_size=4", "train.steps=30", "train.log_every=5",
                "train.checkpoint_every=10"),
    # Generous: CI machines are small and busy, and these only bound a stage that hangs.
    limits={"meta-step": 60, "distributed": 120, "codec": 60, "meta-step-compiled": 90},
    train_grace_s=20.0,
)


@dataclass
class Plan:
    """What every stage needs to know; handed to each child process as JSON."""

    out: str
    device: str
    tiny: bool
    preset: str
    sets: list[str] = field(default_factory=list)
    data: str | None = None
    threads: int | None = None
    compile_backend: str = "inductor"
    fresh: bool = False
    drop_checkpoint: bool = False
    # ``--variant NAME SET...``: training variants trained side by side, each in train/NAME.
    variants: list[list[str]] = field(default_factory=list)
    variant: str | None = None  # the one variant a training child trains
    variant_sets: list[str] = field(default_factory=list)  # its own overrides, applied after --set

    @property
    def scale(self) -> Scale:
        return TINY if self.tiny else PAPER

    def stage_dir(self, stage: str) -> Path:
        if stage == "train" and self.variant:
            return Path(self.out) / stage / self.variant
        return Path(self.out) / stage


# -- small helpers ---------------------------------------------------------------------------------
def write_json(path: Path, document) -> None:
    from metasparse.utils.fileio import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(document, indent=1) + "\n")


def write_text(path: Path, text: str) -> None:
    from metasparse.utils.fileio import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)


def relative(path: Path, out: Path) -> str:
    return str(path.relative_to(out))


def git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10, cwd=Path(__file__).resolve().parent, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it, from Linux's /proc (just ``root`` elsewhere)."""
    children: dict[int, list[int]] = {}
    try:
        entries = [e for e in Path("/proc").iterdir() if e.name.isdigit()]
    except OSError:
        entries = []
    for entry in entries:
        try:
            # "pid (command) state ppid ...": a command may hold spaces and ")", so split after the last ")".
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def kill_tree(root: int) -> None:
    """SIGKILL ``root`` and all its descendants. torch.distributed.run starts each rank in a session of its
    own, so killing a process group would leave the ranks running; the tree is listed before any dies,
    while every rank is still below its launcher."""
    for pid in process_tree(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _device(plan: Plan):
    import torch

    from metasparse.utils.device import resolve_device

    if plan.threads:
        torch.set_num_threads(plan.threads)
    return resolve_device(plan.device)


# -- the stages (each runs in its own child process) -------------------------------------------------
def stage_meta_step(plan: Plan, seconds: float, compiled: bool) -> dict:
    import functools

    import torch

    from metasparse.experiments.bench import format_markdown, hardware_description, run_meta_step_bench

    device = _device(plan)
    if compiled and plan.compile_backend != "inductor":
        # The engine calls torch.compile(fn, dynamic=False); a lighter backend still checks that dynamo
        # and AOT autograd capture the meta-step, without inductor's C++ build (a minute on a small CPU).
        torch.compile = functools.partial(torch.compile, backend=plan.compile_backend)
    scale = plan.scale
    settings = dict(scale.bench, repeats=scale.bench_repeats, warmup=scale.bench_warmup, compile=compiled,
                    compile_backend=plan.compile_backend if compiled else None)
    rows = run_meta_step_bench(**scale.bench, device=device, repeats=scale.bench_repeats,
                               warmup=scale.bench_warmup, compile=compiled, log=lambda line: print(line))
    table = []
    for row in rows:
        tolerance = TF32_TOLERANCE if "TF32" in row.name else FP32_TOLERANCE
        table.append({**asdict(row), "tolerance": tolerance, "gradient_ok": row.grad_rel_diff <= tolerance})
    hardware = hardware_description(device)
    b = scale.bench
    title = (f"meta-step, {b['size']}x{b['size']} images, SIREN {b['depth']}x{b['width']} w0 {b['w0']:g}, "
             f"batch {b['batch']}, {b['inner_steps']} inner steps, on {hardware}")
    markdown = format_markdown(title, rows)
    folder = plan.stage_dir("meta-step-compiled" if compiled else "meta-step")
    write_text(folder / "table.md", markdown + "\n")
    write_json(folder / "table.json", {"settings": settings, "hardware": hardware, "rows": table})
    failed = [r["name"] for r in table if not r["gradient_ok"]]
    return {
        "hardware": hardware,
        "settings": settings,
        "rows": table,
        "gradient_check": "passed" if not failed else "FAILED: " + ", ".join(failed),
        "markdown": markdown,
        "files": [relative(folder / name, Path(plan.out)) for name in ("table.md", "table.json")],
    }


def stage_distributed(plan: Plan, seconds: float) -> dict:
    from metasparse.training.model_file import MetaModel

    scale = plan.scale
    env = dict(os.environ)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    # torch.distributed.run gives the rank OMP_NUM_THREADS=1 unless --threads says otherwise.
    threads = ["--threads", str(plan.threads)] if plan.threads else []
    with tempfile.TemporaryDirectory(prefix="campaign-distributed-") as scratch:
        # The run itself is a check, not a result: its checkpoint stays out of the output folder.
        run_dir = Path(scratch) / "run"
        sets = [part for s in scale.distributed_sets for part in ("--set", s)]
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                   "-m", "metasparse.cli", *threads, "train", "demo", "--data", "samples",
                   "--steps", str(scale.distributed_steps), "--device", plan.device, "--no-evaluate",
                   "--fresh", "--out", str(run_dir), *sets]
        print("$ " + shlex.join(command), flush=True)
        started = time.perf_counter()
        launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env=env)
        try:
            output, _ = launcher.communicate(timeout=max(5.0, seconds - 5))
        except subprocess.TimeoutExpired:
            kill_tree(launcher.pid)
            output, _ = launcher.communicate()
            print(output, flush=True)
            raise TimeoutError(f"the one-rank run did not finish in {max(5.0, seconds - 5):.0f} s") from None
        wall = time.perf_counter() - started
        print(output, flush=True)
        if launcher.returncode != 0:
            raise RuntimeError(f"torch.distributed.run exited with {launcher.returncode}: "
                               + (output.strip().splitlines() or ["(no output)"])[-1])
        model = MetaModel.load(run_dir / "model.safetensors")
    launch = re.search(r"on (\S+) x 1 process \((\w+)\)", output)
    if launch is None:
        raise RuntimeError("the run did not say it joined a process group (no 'x 1 process (backend)' line)")
    steps = int(model.info.get("step", -1))
    if steps != scale.distributed_steps:
        raise RuntimeError(f"the model was saved at step {steps}, not {scale.distributed_steps}")
    at = command.index("--out") + 1  # the temporary run directory is named nowhere in the results
    shown = ["python", *command[1:at], "RUN_DIR", *command[at + 1:]]
    return {"command": shlex.join(shown), "device": launch.group(1), "backend": launch.group(2),
            "steps": steps, "wall_s": round(wall, 2)}


def stage_codec(plan: Plan, seconds: float) -> dict:
    import numpy as np
    import torch

    import metasparse
    from metasparse.data.samples import sample_images
    from metasparse.experiments.bench import hardware_description

    device = _device(plan)
    scale = plan.scale
    image = sample_images(scale.codec_image)[0]
    if scale.codec_crop:
        image = np.ascontiguousarray(image[: scale.codec_crop, : scale.codec_crop])
    codec = metasparse.load_codec("default", device=str(device))
    height, width = image.shape[:2]

    def best_of(fn) -> float:
        times = []
        for _ in range(scale.codec_repeats):
            started = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - started)
        return min(times)

    qualities = range(1, codec.num_qualities + 1) if scale.codec_all_qualities else [codec.default_quality]
    rows = []
    for quality in qualities:
        print(f"quality {quality} …", flush=True)
        result = codec.compress(image, quality)  # also the warm-up (CUDA kernels, allocator)
        decoded = codec.decompress(result.data)
        # The decoder renders the same symbols again; a difference would mean the file alone does not
        # reproduce what the encoder measured.
        mismatch = int(np.abs(decoded.astype(np.int16) - result.reconstruction.astype(np.int16)).max())
        rows.append({
            "quality": quality, "bytes": len(result.data), "bpp": round(result.bpp, 4),
            "psnr": round(result.psnr, 3),
            "encode_s": round(best_of(lambda q=quality: codec.compress(image, q)), 4),
            "decode_s": round(best_of(lambda r=result: codec.decompress(r.data)), 4),
            "decoded_vs_encoder_max_diff": mismatch,
        })
    folder = plan.stage_dir("codec")
    hardware = hardware_description(device)
    header = "| quality | bytes | bpp | PSNR dB | encode s | decode s | decoded vs encoder (max diff) |"
    title = (f"**bundled codec on {scale.codec_image} ({width}x{height}), best of {scale.codec_repeats}, "
             f"on {hardware}**")
    lines = [title, "", header, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['quality']} | {r['bytes']} | {r['bpp']:.3f} | {r['psnr']:.2f} | {r['encode_s']:.3f} | "
              f"{r['decode_s']:.3f} | {r['decoded_vs_encoder_max_diff']} |" for r in rows]
    markdown = "\n".join(lines)
    write_text(folder / "table.md", markdown + "\n")
    write_json(folder / "table.json", {"image": scale.codec_image, "width": width, "height": height,
                                       "hardware": hardware, "rows": rows})
    return {"hardware": hardware, "image": f"{scale.codec_image} {width}x{height}", "rows": rows,
            "markdown": markdown,
            "files": [relative(folder / name, Path(plan.out)) for name in ("table.md", "table.json")]}


def training_data(plan: Plan, preset_path: str) -> tuple[str, str]:
    """The data path and why: ``--data``, else the preset's own where it exists, else the sample photos."""
    if plan.data:
        return plan.data, "--data"
    if preset_path in ("samples", "synthetic") or Path(preset_path).exists():
        return preset_path, "the preset's"
    return "samples", f"the preset's {preset_path!r} is not here; scikit-image's sample photos instead"


def stage_train(plan: Plan, seconds: float) -> dict:
    from metasparse.config import apply_overrides
    from metasparse.presets import get_preset
    from metasparse.training.algorithm1 import total_steps
    from metasparse.training.trainer import Trainer
    from metasparse.viz.curves import save_training_curve

    started = time.monotonic()
    deadline = started + seconds
    device = _device(plan)
    config = get_preset(plan.preset)
    data, data_reason = training_data(plan, config.data.path)
    sets = [*plan.scale.train_sets, f"data.path={json.dumps(data)}",
            f"train.device={json.dumps(str(device))}", *plan.sets, *plan.variant_sets]
    config = apply_overrides(config, sets)
    folder = plan.stage_dir("train")
    folder.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(config, folder, device=device, log=lambda s: print(s, flush=True))
    if plan.fresh:
        trainer.checkpoint_path.unlink(missing_ok=True)
    resumed_at = trainer.step if trainer.try_resume() else None
    write_text(folder / "config.json", config.to_json())
    first_step = trainer.step
    print(f"{len(trainer.source)} training signals from {data} ({data_reason}); "
          f"{'resumed at step ' + str(resumed_at) if resumed_at is not None else 'from scratch'}; "
          f"{max(0.0, deadline - time.monotonic()):.0f} s to train", flush=True)
    elapsed_at: dict[int, float] = {}  # outer step -> seconds since this stage started training
    training_started = time.monotonic()

    def on_log(step: int, entry: dict) -> None:
        elapsed_at[step] = time.monotonic() - training_started
        print(f"step {step:,}  train PSNR {entry['psnr']:.2f} dB  ({elapsed_at[step]:.0f} s)", flush=True)

    trainer.run(progress=on_log, deadline=deadline)
    training_s = time.monotonic() - training_started
    steps_done = trainer.step - first_step
    model_path = folder / "model.safetensors"
    if not model_path.is_file():
        raise RuntimeError(f"training ended without writing {model_path}")
    if not trainer.history:
        raise RuntimeError("training logged no step (is the budget too short for train.log_every steps?)")

    # Seconds since this stage began training, beside each step it logged (variants are compared at equal time).
    curve = [{**e, "elapsed_s": round(elapsed_at[e["step"]], 2) if e["step"] in elapsed_at else ""}
             for e in trainer.history]
    save_training_curve(curve, folder, f"{config.name} on {device}",
                        f"train PSNR after {config.meta.inner_steps} inner steps (dB)",
                        resumed_at=[resumed_at] if resumed_at else [],
                        fields=("step", "round", "loss", "psnr", "elapsed_s"))
    if plan.drop_checkpoint:
        trainer.checkpoint_path.unlink(missing_ok=True)

    meta = trainer.learner.detached_meta()
    parameters = sum(int(v.numel()) for group in meta.values() for v in group.values())
    last = trainer.history[-1]
    files = [relative(folder / name, Path(plan.out)) for name in
             ("config.json", "model.safetensors", "curve.csv", "curve.png", "checkpoint.safetensors")
             if (folder / name).is_file()]
    return {
        "preset": config.name, "sets": sets, "data": data, "data_reason": data_reason,
        "signals": len(trainer.source), "meta_parameters": parameters,
        "resumed_at": resumed_at, "steps": trainer.step, "steps_this_run": steps_done,
        "total_steps": total_steps(config), "training_s": round(training_s, 1),
        "steps_per_s": round(steps_done / training_s, 2) if training_s > 0 else None,
        "final_psnr": round(last["psnr"], 3), "final_loss": last["loss"],
        # The training budget cycles through the quality levels, so one log point is noisy.
        "psnr_last10": round(sum(e["psnr"] for e in trainer.history[-10:]) / len(trainer.history[-10:]), 3),
        "variant": plan.variant,
        "variant_sets": list(plan.variant_sets),
        "model_bytes": model_path.stat().st_size, "model": relative(model_path, Path(plan.out)),
        "files": files,
    }


def run_stage(name: str, plan: Plan, seconds: float, result_path: Path) -> None:
    """The child process: run one stage, write its result (or its error) as JSON, never raise."""
    started = time.perf_counter()
    try:
        if name == "meta-step":
            results = stage_meta_step(plan, seconds, compiled=False)
        elif name == "meta-step-compiled":
            results = stage_meta_step(plan, seconds, compiled=True)
        elif name == "distributed":
            results = stage_distributed(plan, seconds)
        elif name == "codec":
            results = stage_codec(plan, seconds)
        elif name == "train":
            results = stage_train(plan, seconds)
        else:
            raise ValueError(f"unknown stage {name!r}")
        outcome = {"status": "ok", "results": results}
    except BaseException as e:  # noqa: BLE001 - whatever it is, it is recorded and the next stage runs
        traceback.print_exc()
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        outcome = {"status": "error", "error": f"{type(e).__name__}: {first}"[:500]}
    outcome["seconds"] = round(time.perf_counter() - started, 1)
    result_path.write_text(json.dumps(outcome))


# -- the parent: budget, child processes, summary --------------------------------------------------------
@dataclass
class Running:
    """A stage's child process, started by :func:`start_stage`, ended by :func:`finish_stage`."""

    name: str
    plan: Plan
    child: subprocess.Popen
    log: io.BufferedWriter
    raw_log: Path
    result_path: Path
    started: float


def start_stage(name: str, plan: Plan, work_s: float, scratch: Path) -> Running:
    scratch.mkdir(parents=True, exist_ok=True)
    result_path = scratch / "result.json"
    raw_log = scratch / "log.txt"
    command = [sys.executable, str(Path(__file__).resolve()), "--stage", name,
               "--plan", json.dumps(asdict(plan)), "--stage-seconds", f"{work_s:.1f}",
               "--stage-result", str(result_path)]
    log = open(raw_log, "wb")  # noqa: SIM115 - closed by finish_stage
    # Unbuffered, so that the log of a stage killed at its limit ends where the stage was.
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                             env=dict(os.environ, PYTHONUNBUFFERED="1"))
    return Running(name, plan, child, log, raw_log, result_path, time.perf_counter())


def finish_stage(running: Running, limit_s: float, log_path: Path) -> dict:
    """Kill the stage's process tree if it still runs, and read its outcome and log."""
    timed_out = running.child.poll() is None
    if timed_out:
        kill_tree(running.child.pid)
    running.child.wait()
    running.log.close()
    seconds = round(time.perf_counter() - running.started, 1)
    text = running.raw_log.read_bytes()[-LOG_TAIL_BYTES:].decode("utf-8", errors="replace")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(log_path, text)
    if running.result_path.is_file():
        outcome = json.loads(running.result_path.read_text())
    elif timed_out:
        outcome = {"status": "timeout", "error": f"stopped after its limit of {limit_s:.1f} s"}
    else:
        last = text.strip().splitlines()[-1:] or ["(no output)"]
        outcome = {"status": "crashed", "error": f"exit status {running.child.returncode}: {last[0][:300]}"}
    outcome.update(name=running.name, wall_s=seconds, limit_s=round(limit_s, 1),
                   log=relative(log_path, Path(running.plan.out)))
    return outcome


def launch_stage(name: str, plan: Plan, limit_s: float, work_s: float, log_path: Path) -> dict:
    """Run stage ``name`` in a child process killed (with everything it started) after ``limit_s``."""
    with tempfile.TemporaryDirectory(prefix="campaign-stage-") as scratch:
        running = start_stage(name, plan, work_s, Path(scratch))
        try:
            running.child.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            pass
        finally:  # also on Ctrl-C: no stage outlives the campaign
            outcome = finish_stage(running, limit_s, log_path)
    return outcome


# A variant that fails this early is started again on the torch.func engine, once: the fast SIREN path is the
# newest code, and a lent GPU's minutes should not be lost to it.
FALLBACK_SET = "meta.fast_siren=false"


def launch_variants(plan: Plan, limit_s: float, work_s: float, out: Path) -> dict:
    """The training stage with ``--variant``: every variant trains at the same time, in a child of its own
    (a small SIREN leaves most of a GPU idle), each in ``train/NAME``; a failed one is retried once on the
    torch.func engine while at least a minute of training is left."""
    grace = limit_s - work_s
    deadline = time.monotonic() + limit_s
    outcomes: dict[str, dict] = {}
    first_failures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="campaign-train-") as scratch:
        running: dict[str, Running] = {}
        for name, *sets in plan.variants:
            child_plan = Plan(**{**asdict(plan), "variant": name, "variant_sets": list(sets), "variants": []})
            running[name] = start_stage("train", child_plan, work_s, Path(scratch) / name)
        try:
            while running:
                time.sleep(0.5)
                for name, job in list(running.items()):
                    if job.child.poll() is None and time.monotonic() < deadline:
                        continue
                    del running[name]
                    tag = "-retry" if name in first_failures else ""
                    outcome = {**finish_stage(job, limit_s, out / "logs" / f"train-{name}{tag}.log"), "name": name}
                    left = deadline - time.monotonic()
                    can_retry = (outcome["status"] != "ok" and not tag
                                 and FALLBACK_SET not in [*job.plan.sets, *job.plan.variant_sets]
                                 and left - grace > 60)
                    if can_retry:
                        first_failures[name] = outcome
                        retry_plan = Plan(**{**asdict(job.plan), "fresh": False,
                                             "variant_sets": [*job.plan.variant_sets, FALLBACK_SET]})
                        running[name] = start_stage("train", retry_plan, left - grace, Path(scratch) / (name + tag))
                        continue
                    if name in first_failures:
                        outcome["first_attempt"] = first_failures[name]
                    outcomes[name] = outcome
        finally:
            for name, job in running.items():
                outcomes[name] = {**finish_stage(job, limit_s, out / "logs" / f"train-{name}.log"), "name": name}
    ordered = [outcomes[name] for name, *_ in plan.variants]
    ok = [o for o in ordered if o["status"] == "ok"]
    status = "ok" if len(ok) == len(ordered) else ("partial" if ok else "error")
    results = {"variants": ordered}
    if ok:
        results["markdown"] = variants_table(ordered)
        figure = variants_figure(out, [o for o in ordered if o["status"] == "ok"])
        if figure:
            results["figure"] = figure
    stage = {"status": status, "results": results}
    if status != "ok":
        failed = [f"{o['name']}: {o.get('error', o['status'])}" for o in ordered if o["status"] != "ok"]
        stage["error"] = "; ".join(failed)[:500]
    return stage


def variants_table(outcomes: list[dict]) -> str:
    lines = [("| variant | settings | meta-parameters | steps | steps/s | train PSNR, last 10 logs (dB) | "
             "last (dB) |"), "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for outcome in outcomes:
        r = outcome.get("results") or {}
        if outcome["status"] != "ok":
            lines.append(f"| {outcome['name']} | {outcome['status']}: {outcome.get('error', '')} | | | | | |")
            continue
        sets = " ".join(f"`{s}`" for s in r["variant_sets"]) or "(the preset)"
        lines.append(f"| {outcome['name']} | {sets} | {r['meta_parameters']:,} | {r['steps']:,} | "
                     f"{r['steps_per_s']} | {r['psnr_last10']:.2f} | {r['final_psnr']:.2f} |")
    return "\n".join(lines)


def variants_figure(out: Path, outcomes: list[dict]) -> str | None:
    """All variants' curves in one figure, against outer steps and against seconds (equal time is fair)."""
    from matplotlib.figure import Figure

    from metasparse.utils.fileio import save_figure

    figure = Figure(figsize=(10, 3.8))
    by_step, by_time = figure.subplots(1, 2, sharey=True)
    drawn = False
    for outcome in outcomes:
        path = out / "train" / outcome["name"] / "curve.csv"
        if not path.is_file():
            continue
        rows = list(csv.DictReader(path.read_text().splitlines()))
        steps = [int(r["step"]) for r in rows]
        psnr = [float(r["psnr"]) for r in rows]
        by_step.plot(steps, psnr, lw=1.0, label=outcome["name"])
        timed = [(float(r["elapsed_s"]), float(r["psnr"])) for r in rows if r["elapsed_s"]]
        if timed:
            by_time.plot(*zip(*timed), lw=1.0, label=outcome["name"])
        drawn = True
    if not drawn:
        return None
    by_step.set_xlabel("outer step")
    by_time.set_xlabel("seconds of training (this run)")
    by_step.set_ylabel("train PSNR after the inner loop (dB)")
    for axes in (by_step, by_time):
        axes.grid(alpha=0.3)
    by_step.legend(fontsize=8, loc="lower right")
    path = out / "train" / "variants.png"
    save_figure(figure, path, dpi=110)
    return relative(path, out)


def stage_limit(name: str, plan: Plan, remaining_s: float, budget_s: float) -> tuple[float, float]:
    """``(limit, working time)`` for stage ``name`` with ``remaining_s`` of the budget left."""
    if name == "train":
        limit = remaining_s
        return limit, limit - plan.scale.train_grace_s
    # The stages before training may use what training does not need: it keeps a quarter of the budget.
    limit = min(plan.scale.limits[name], remaining_s - 0.25 * budget_s)
    return limit, limit


def markdown_summary(summary: dict) -> str:
    campaign = summary["campaign"]
    kind = " (tiny check)" if campaign["tiny"] else ""
    title = f"# GPU campaign{kind}: {campaign.get('hardware') or 'unknown'}"
    run = (f"`{campaign['command']}` at commit {campaign['commit'] or 'unknown'}, {campaign['started']}; "
           f"budget {campaign['budget_minutes']:g} min, finished in {campaign['wall_s']:.0f} s.")
    lines = [title, "", run, "", "| stage | status | seconds | limit s | note |",
             "| --- | --- | ---: | ---: | --- |"]
    for stage in summary["stages"]:
        note = stage.get("error", "")
        results = stage.get("results") or {}
        if "gradient_check" in results:
            note = f"meta-gradient check {results['gradient_check']}"
        lines.append(f"| {stage['name']} | {stage['status']} | {stage['wall_s']:.1f} | "
                     f"{stage['limit_s']:.0f} | {note} |")
    for stage in summary["stages"]:
        results = stage.get("results")
        lines += ["", f"## {TITLES[stage['name']]}", ""]
        if not results:
            log = f" (log: [{stage['log']}]({stage['log']}))" if stage["log"] else ""
            lines.append(f"{stage['status']}: {stage.get('error', '')}{log}")
            continue
        if "markdown" in results:
            lines.append(results["markdown"])
        if stage["name"].startswith("meta-step"):
            check = (f"Meta-gradient check (float32 rows within {FP32_TOLERANCE:g}, TF32 rows within "
                     f"{TF32_TOLERANCE:g} of the naive loop): {results['gradient_check']}.")
            lines += ["", check]
        elif stage["name"] == "distributed":
            lines.append(f"`{results['command']}`: {results['steps']} outer steps on {results['device']} as "
                         f"one {results['backend']} rank in {results['wall_s']:.1f} s (launch included).")
        elif stage["name"] == "train" and "variants" in results:
            lines += variant_paragraphs(results)
        elif stage["name"] == "train":
            lines += training_paragraphs(results)
    return "\n".join(lines) + "\n"


def training_paragraphs(results: dict, figure: bool = True) -> list[str]:
    sets = ", ".join(f"`{s}`" for s in results["sets"])
    resumed = f", resumed at step {results['resumed_at']:,}" if results["resumed_at"] is not None else ""
    what = (f"`{results['preset']}` with {sets}; {results['signals']} training signals "
            f"({results['data_reason']}); {results['meta_parameters']:,} meta-parameters.")
    progress = (f"{results['steps_this_run']:,} outer steps in {results['training_s']:.0f} s "
                f"({results['steps_per_s']} steps/s{resumed}), now at step {results['steps']:,} of "
                f"{results['total_steps']:,}; last train PSNR {results['final_psnr']:.2f} dB.")
    curve = str(Path(results["model"]).with_name("curve.csv"))
    files = (f"Model: [{results['model']}]({results['model']}) ({results['model_bytes']:,} bytes); "
             f"curve: [{curve}]({curve}).")
    lines = [what, "", progress, "", files]
    if figure:
        png = str(Path(results["model"]).with_name("curve.png"))
        lines += ["", f"![training curve]({png})"]
    return lines


def variant_paragraphs(results: dict) -> list[str]:
    lines = []
    if results.get("figure"):
        lines += ["", f"![training curves]({results['figure']})"]
    for outcome in results["variants"]:
        lines += ["", f"### {outcome['name']}", ""]
        if outcome.get("first_attempt"):
            first = outcome["first_attempt"]
            lines += [(f"First attempt {first['status']} ({first.get('error', '')}; log: [{first['log']}]"
                      f"({first['log']})); started again with `{FALLBACK_SET}`."), ""]
        if outcome["status"] != "ok":
            lines.append(f"{outcome['status']}: {outcome.get('error', '')} (log: [{outcome['log']}]({outcome['log']}))")
            continue
        lines += training_paragraphs(outcome["results"], figure=False)
    return lines


def write_summary(out: Path, summary: dict) -> None:
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", markdown_summary(summary))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", type=Path, default=Path("results/gpu-campaign"), help="output folder")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="the whole command ends within this (default 8; --tiny: 4, an upper bound)")
    parser.add_argument("--device", default=None,
                        help="auto (cuda where there is one), cpu, cuda (default auto; --tiny: cpu)")
    parser.add_argument("--preset", default="codec-photos", help="what the training stage meta-trains")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override a field of the training preset (repeatable)")
    parser.add_argument("--variant", dest="variants", action="append", default=[], metavar="'NAME SET...'",
                        help="train this variant beside the others, e.g. 'wide model.width=128' (repeatable); "
                             "each one in train/NAME, all at the same time, --set applied first")
    parser.add_argument("--data", default=None,
                        help="training data (folder, file, .npz or 'samples'); default: the preset's when it "
                             "exists, else scikit-image's sample photos")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads in every stage")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend of the compiled meta-step "
                             "(default inductor; --tiny: aot_eager)")
    parser.add_argument("--fresh", action="store_true",
                        help="start the training over instead of resuming the one in --out")
    parser.add_argument("--drop-checkpoint", action="store_true",
                        help="keep only the trained model, not the resumable checkpoint")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny sizes on CPU: checks every stage in under a minute")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"which stages to run (of {','.join(STAGES)})")
    # Internal: how the parent starts one stage in a child process.
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    parser.add_argument("--stage-seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--stage-result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stage:
        fields = json.loads(args.plan)
        run_stage(args.stage, Plan(**fields), args.stage_seconds, args.stage_result)
        return 0
    started_wall = time.time()
    started = time.monotonic()
    budget_s = 60 * (args.budget_minutes if args.budget_minutes is not None else (4.0 if args.tiny else 8.0))
    deadline = started + budget_s
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not math.isfinite(budget_s) or budget_s <= 0:
        problem = f"unknown stage(s) {', '.join(unknown)}" if unknown else "--budget-minutes must be > 0"
        print(f"error: {problem}", file=sys.stderr)
        return 2
    variants = [shlex.split(v) for v in args.variants]
    names = [v[0] for v in variants if v]
    if len(names) != len(variants) or len(set(names)) != len(names) or not all(
            re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", n) for n in names):
        print("error: each --variant needs a distinct NAME (letters, digits, '.', '_', '-') before its "
              "settings", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    plan = Plan(out=str(out), device=args.device or ("cpu" if args.tiny else "auto"), tiny=args.tiny,
                preset=args.preset, sets=list(args.sets), data=args.data, threads=args.threads,
                compile_backend=args.compile_backend or ("aot_eager" if args.tiny else "inductor"),
                fresh=args.fresh, drop_checkpoint=args.drop_checkpoint, variants=variants)
    summary = {"campaign": {
        "command": shlex.join(["python", "bench/gpu_campaign.py", *(sys.argv[1:] if argv is None else argv)]),
        "commit": git_commit(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started_wall)),
        "budget_minutes": budget_s / 60, "tiny": args.tiny, "plan": {**asdict(plan), "out": str(args.out)},
        "hardware": None, "wall_s": 0.0,
    }, "stages": []}
    for number, name in enumerate(STAGES, 1):
        if name not in stages:
            continue
        remaining = deadline - time.monotonic() - SUMMARY_RESERVE_S
        limit, work = stage_limit(name, plan, remaining, budget_s)
        print(f"[{number}/{len(STAGES)}] {name} (limit {max(0.0, limit):.0f} s) …", flush=True)
        if limit < 5 or work < 1:
            stage = {"name": name, "status": "skipped", "error": "no time left in the budget", "wall_s": 0.0,
                     "limit_s": round(max(0.0, limit), 1), "log": ""}
        elif name == "train" and plan.variants:
            stage = {"name": name, "limit_s": round(limit, 1), "log": "", "wall_s": 0.0}
            begun = time.perf_counter()
            stage.update(launch_variants(plan, limit, work, out))
            stage["wall_s"] = round(time.perf_counter() - begun, 1)
        else:
            stage = launch_stage(name, plan, limit, work, out / "logs" / f"{name}.log")
        summary["stages"].append(stage)
        hardware = (stage.get("results") or {}).get("hardware")
        summary["campaign"]["hardware"] = summary["campaign"]["hardware"] or hardware
        summary["campaign"]["wall_s"] = round(time.monotonic() - started, 1)
        write_summary(out, summary)
        why = f": {stage['error']}" if "error" in stage else ""
        print(f"      {stage['status']} in {stage['wall_s']:.1f} s{why}", flush=True)
    print(f"summary: {out / 'summary.md'}")
    return 0 if all(s["status"] == "ok" for s in summary["stages"]) else 1


if __name__ == "__main__":
    sys.exit(main())
