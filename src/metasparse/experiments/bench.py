"""The engine against a naive MAML loop, measured in the same run.

The naive baseline is the usual MAML code: a Python loop over signals with
``torch.autograd.grad(create_graph=True)``. The engine variants are the batched ``torch.func``
meta-gradient (``vmap`` over signals), with TF32 matmuls on CUDA, and compiled with
``torch.compile``. Each variant's meta-gradient is compared with the naive fp32 one; a speed-up
only counts if that relative difference stays small. The command is ``metasparse bench``
(``metasparse.cli.bench``).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from metasparse.data.signals import grid_coordinates
from metasparse.meta.engine import MetaConfig, make_meta_gradient
from metasparse.meta.fit import FitConfig, fit_signals
from metasparse.meta.problems.base import WeightsProblem
from metasparse.meta.reference import naive_meta_gradient
from metasparse.nn.siren import ModelConfig, build_model


@dataclass
class BenchRow:
    name: str
    ms: float
    speedup: float
    grad_rel_diff: float | None
    note: str = ""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time in ms (after ``warmup`` calls, which also absorb compilation)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return times[len(times) // 2]


def relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """‖a − b‖ / ‖b‖ over all tensors together."""
    num = sum(float(((a[k].double() - b[k].double()) ** 2).sum()) for k in b)
    den = sum(float((b[k].double() ** 2).sum()) for k in b)
    return (num / max(den, 1e-300)) ** 0.5


def run_meta_step_bench(size: int, width: int, depth: int, w0: float, batch: int, inner_steps: int,
                        device: torch.device, repeats: int, warmup: int, compile: bool, seed: int = 0,
                        log: Callable[[str], None] = print) -> list[BenchRow]:
    model = build_model(ModelConfig(width=width, depth=depth, w0=w0))
    problem = WeightsProblem(model, inner_lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    meta = {"theta": {k: v.to(device) for k, v in problem.init_meta(g)["theta"].items()}}
    coords = grid_coordinates((size, size), device=device).reshape(-1, 2)
    # Smooth random images rather than noise, so the inner loop sees realistic gradients.
    low = torch.rand(batch, 3, 8, 8, generator=g)
    targets = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    targets = targets.clamp(0, 1).permute(0, 2, 3, 1).reshape(batch, -1, 3).to(device)

    def set_tf32(on: bool) -> None:
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = on
            torch.backends.cudnn.allow_tf32 = on

    set_tf32(False)
    reference, _ = naive_meta_gradient(problem, meta["theta"], coords, targets, inner_steps, 1e-2)
    rows: list[BenchRow] = []

    log("naive per-signal loop (autograd.grad, create_graph=True, fp32) …")
    naive_ms = time_call(
        lambda: naive_meta_gradient(problem, meta["theta"], coords, targets, inner_steps, 1e-2), device, warmup, repeats
    )
    rows.append(BenchRow("naive loop (fp32)", naive_ms, 1.0, 0.0))

    # (name, config, TF32, fast SIREN path): the torch.func engine and the hand-written fast path, each timed.
    plain = MetaConfig(inner_steps=inner_steps)
    variants: list[tuple[str, MetaConfig, bool, bool]] = [("engine: vmap (fp32)", plain, False, False),
                                                          ("engine: fast SIREN path (fp32)", plain, False, True)]
    if device.type == "cuda":
        variants.append(("engine: vmap + TF32", plain, True, False))
    if compile:
        compiled = MetaConfig(inner_steps=inner_steps, compile=True)
        tf32 = device.type == "cuda"
        variants.append(("engine: vmap + compile" + (" + TF32" if tf32 else ""), compiled, tf32, False))
        variants.append(("engine: fast path + compile" + (" + TF32" if tf32 else ""), compiled, tf32, True))
    for name, cfg, tf32, fast in variants:
        log(f"{name} …")
        set_tf32(tf32)
        fn = make_meta_gradient(problem, cfg, fast=fast)
        t_compile = time.perf_counter()
        grads, _ = fn(meta, coords, targets, None)
        _sync(device)
        first_ms = (time.perf_counter() - t_compile) * 1000
        diff = relative_difference(grads["theta"], reference)
        ms = time_call(lambda fn=fn: fn(meta, coords, targets, None), device, warmup, repeats)
        note = f"first call {first_ms / 1000:.1f} s (compilation)" if cfg.compile else ""
        rows.append(BenchRow(name, ms, naive_ms / ms, diff, note))
    set_tf32(False)
    return rows


def run_fit_bench(size: int, width: int, depth: int, w0: float, signals: int, steps: int, device: torch.device,
                  log: Callable[[str], None] = print) -> list[BenchRow]:
    """Fitting throughput: N signals, ``steps`` Adam steps, one at a time vs all at once."""
    model = build_model(ModelConfig(width=width, depth=depth, w0=w0))
    problem = WeightsProblem(model)
    g = torch.Generator().manual_seed(1)
    meta = {"theta": {k: v.to(device) for k, v in problem.init_meta(g)["theta"].items()}}
    coords = grid_coordinates((size, size), device=device).reshape(-1, 2)
    targets = torch.rand(signals, size * size, 3, generator=g).to(device)

    def naive():
        for t in targets:
            params = {k: v.clone().requires_grad_(True) for k, v in meta["theta"].items()}
            opt = torch.optim.Adam(params.values(), lr=1e-4)
            for _ in range(steps):
                opt.zero_grad()
                loss = ((model.apply(params, coords) - t) ** 2).mean()
                loss.backward()
                opt.step()

    log(f"fitting {signals} signals x {steps} Adam steps, one signal at a time …")
    naive_ms = time_call(naive, device, 0, 1)
    log(f"fitting {signals} signals x {steps} Adam steps, all at once …")
    batched_ms = time_call(
        lambda: fit_signals(problem, meta, coords, targets, FitConfig(steps=steps, batch_size=signals)), device, 1, 1
    )
    return [
        BenchRow("fit: one signal at a time", naive_ms, 1.0, None, f"{signals / naive_ms * 1000:.2f} signals/s"),
        BenchRow("fit: batched (vmap)", batched_ms, naive_ms / batched_ms, None,
                 f"{signals / batched_ms * 1000:.2f} signals/s"),
    ]


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), torch {torch.__version__}"


def format_markdown(title: str, rows: list[BenchRow]) -> str:
    lines = [f"**{title}**", "", "| variant | ms | speed-up vs naive | meta-gradient rel. diff | note |",
             "| --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        diff = "" if r.grad_rel_diff is None else f"{r.grad_rel_diff:.1e}"
        lines.append(f"| {r.name} | {r.ms:.1f} | {r.speedup:.2f}x | {diff} | {r.note} |")
    return "\n".join(lines)
