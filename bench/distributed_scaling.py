"""Throughput of data-parallel meta-training with 1 and more processes, and its all-reduce cost.

    python bench/distributed_scaling.py [--runs 1x4,2x4,2x8] [--size 32] [--width 64] [--depth 3]
                                        [--steps 20] [--device cpu] [--threads 1] [--json FILE]

``--runs`` lists ``PROCESSESxGLOBAL_BATCH``: ``1x4,2x4`` is strong scaling (the same global batch
split over 2 ranks), ``2x8`` weak scaling (the same per-rank batch). Each run is a real ``Trainer``
joined to a process group through ``metasparse.training.distributed.init_from_env`` (gloo on CPU, NCCL on
GPUs, one GPU per rank), started with ``torch.multiprocessing.spawn``; a one-process run is the
plain single-process trainer. Measured per outer step, after warm-up steps: wall time on rank 0,
and the time inside the gradient all-reduce (which includes waiting for the slowest rank), beside a
standalone all-reduce of the same size after a barrier (the transfer alone).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smooth_signals(n: int, size: int):
    from metasparse.data.signals import SignalSet, grid_coordinates

    g = torch.Generator().manual_seed(0)
    low = torch.rand(n, 3, 4, 4, generator=g)
    up = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    values = (up.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return SignalSet(values, grid_coordinates((size, size)), 1 / 255, [f"s{i}" for i in range(n)])


def worker(rank: int, procs: int, batch: int, opts: dict, port: int, result: str) -> None:
    if procs > 1:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(procs), LOCAL_RANK=str(rank),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(opts["threads"])
    from metasparse.config import DataConfig, RunConfig, TrainConfig
    from metasparse.meta.engine import MetaConfig
    from metasparse.modalities.loading import BatchSource
    from metasparse.nn.siren import ModelConfig
    from metasparse.training import distributed
    from metasparse.training.trainer import Trainer

    world, dev = distributed.init_from_env(opts["device"])
    never = 10**9  # no logging or checkpoints inside the timed steps
    config = RunConfig(
        model=ModelConfig(width=opts["width"], depth=opts["depth"], w0=opts["w0"]),
        meta=MetaConfig(inner_steps=opts["inner_steps"], outer_lr=1e-5, batch_size=batch),
        data=DataConfig(path="unused"),
        train=TrainConfig(steps=never, log_every=never, checkpoint_every=never, device=str(dev)),
    )

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    with tempfile.TemporaryDirectory() as run_dir:
        signals = smooth_signals(max(16, batch), opts["size"])
        trainer = Trainer(config, run_dir, source=BatchSource(config.data, dev, signals=signals), device=dev)
        comm: list[float] = []
        reduce = trainer.learner.grad_reducer
        if reduce is not None:
            def timed(tensors):
                sync()
                t0 = time.perf_counter()
                reduce(tensors)
                sync()
                comm.append(time.perf_counter() - t0)

            trainer.learner.grad_reducer = timed
        trainer.run(max_steps=opts["warmup"])
        comm.clear()
        sync()
        distributed.barrier()
        t0 = time.perf_counter()
        trainer.run(max_steps=opts["steps"])
        sync()
        distributed.barrier()
        seconds = (time.perf_counter() - t0) / opts["steps"]
        numel = sum(p.numel() for p in trainer.learner.params())
        pure = distributed.all_reduce_seconds(numel, repeats=10) if world.distributed else 0.0
        comm_mean = torch.tensor([statistics.mean(comm) if comm else 0.0])
        comm_all = distributed.all_gather_cat(comm_mean)
        if world.is_main:
            Path(result).write_text(json.dumps({
                "processes": procs, "global_batch": batch, "per_rank_batch": batch // procs,
                "ms_per_step": seconds * 1e3, "steps_per_s": 1 / seconds, "signals_per_s": batch / seconds,
                "allreduce_ms_per_step": float(comm_all.mean()) * 1e3, "allreduce_alone_ms": pure * 1e3,
                "parameters": numel, "device": str(dev), "backend": world.backend,
            }))
    distributed.shutdown()


def run_one(procs: int, batch: int, opts: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "result.json")
        args = (procs, batch, opts, free_port(), result)
        if procs == 1:
            worker(0, *args)
        else:
            mp.spawn(worker, args=args, nprocs=procs, join=True)
        return json.loads(Path(result).read_text())


def markdown(rows: list[dict]) -> str:
    base = rows[0]["signals_per_s"]
    lines = [("| processes | global batch | per-rank batch | ms / outer step | outer steps/s | signals/s | "
              "speed-up (signals/s) | all-reduce ms/step (incl. wait) | all-reduce alone ms |"),
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['processes']} | {r['global_batch']} | {r['per_rank_batch']} | {r['ms_per_step']:.1f} | "
                     f"{r['steps_per_s']:.2f} | {r['signals_per_s']:.1f} | {r['signals_per_s'] / base:.2f}x | "
                     f"{r['allreduce_ms_per_step']:.2f} | {r['allreduce_alone_ms']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="1x4,2x4,2x8", help="PROCESSESxGLOBAL_BATCH, comma separated")
    parser.add_argument("--size", type=int, default=32, help="image side")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--w0", type=float, default=30.0)
    parser.add_argument("--inner-steps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed outer steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU per process)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--json", type=Path, default=None)
    a = parser.parse_args()
    runs = []
    for item in a.runs.split(","):
        procs, batch = (int(x) for x in item.lower().split("x"))
        if procs < 1 or batch < 1 or batch % procs:
            parser.error(f"run {item}: the global batch must be a positive multiple of the processes")
        runs.append((procs, batch))
    opts = {k: getattr(a, k) for k in ("size", "width", "depth", "w0", "inner_steps", "steps", "warmup", "device",
                                       "threads")}
    if a.device.startswith("cuda"):
        hardware = f"{torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}"
    else:
        hardware = f"CPU {platform.machine()}, {os.cpu_count()} cores, {a.threads} thread(s) per process"
    setting = (f"SIREN 2-{a.width}x{a.depth}-3, {a.size}x{a.size} images, {a.inner_steps} inner steps "
               f"(second-order MAML), {a.steps} timed steps after {a.warmup} warm-up; {hardware}; "
               f"torch {torch.__version__}")
    print(setting, flush=True)
    rows = []
    for procs, batch in runs:
        rows.append(run_one(procs, batch, opts))
        r = rows[-1]
        print(f"  {procs} x {batch // procs} signals: {r['ms_per_step']:.1f} ms/step, "
              f"all-reduce {r['allreduce_ms_per_step']:.2f} ms/step", flush=True)
    print(f"parameters: {rows[0]['parameters']:,} ({rows[0]['parameters'] * 4 / 1e6:.3f} MB of float32 per all-reduce)")
    print(markdown(rows))
    if a.json is not None:
        a.json.write_text(json.dumps({"setting": setting, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
