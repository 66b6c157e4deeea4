"""The CPU meta-step at the settings the project trains on CPU: naive loop vs engine vs fast path,
the batched fit vs one signal at a time, and the real Trainer's outer steps per second.

Settings:
- codec: ``codec-photos``' network and problem (MSCN gated shift modulations of a 4x64 SIREN, w0 30,
  MetaSGD, 3 inner steps, hard-concrete gates with a nested training budget), 32 patches of 32x32;
- cpu: the experiments' cpu scale (MAML on all weights of a 4x64 SIREN, w0 30, 2 inner SGD steps,
  lr 1e-2, second order), 3 images of 32x32.

Every variant runs once per round, rounds interleaved, so all see the same load: the tables give the
median and the minimum over rounds, and ratios of each. The meta-gradient of every variant is compared
with the naive loop's in float32 (relative L2 difference over all tensors of a group), and the fast
path's also in float64.
"""


from __future__ import annotations

import ctypes
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from metasparse.config import build_problem
from metasparse.data.signals import grid_coordinates
from metasparse.experiments.bench import relative_difference
from metasparse.meta.engine import MetaConfig, make_meta_gradient
from metasparse.meta.fast_siren import FastMetaGradient
from metasparse.meta.fit import FitConfig, fit_signals
from metasparse.meta.problems.base import WeightsProblem
from metasparse.meta.reference import naive_meta_gradient, naive_problem_meta_gradient
from metasparse.nn.siren import ModelConfig, build_model
from metasparse.presets import get_preset


def smooth_images(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    low = torch.rand(n, 3, 8, 8, generator=generator)
    up = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    return up.clamp(0, 1).permute(0, 2, 3, 1).reshape(n, -1, 3)


def to_dtype(tree, dtype):
    if tree is None:
        return None
    return {g: {k: v.to(dtype) for k, v in d.items()} for g, d in tree.items()}


class Setting:
    """A problem, its meta-state, a batch and the naive loop that is the baseline."""

    def __init__(self, name: str, dtype=torch.float32):
        g = torch.Generator().manual_seed(0)
        self.name = name
        if name == "codec":
            config = get_preset("codec-photos")
            self.problem = build_problem(config)
            self.meta_config = config.meta
            meta = self.problem.init_meta(g)
            # A mid-run state: the budget of the 4th outer step (the 64-modulation level).
            self.problem.set_step(4, self.problem.num_gates(meta))
            noise = self.problem.sample_noise(meta, torch.Generator().manual_seed(5))
            self.batch, self.size = config.meta.batch_size, 32
            self.fit_config = config.fit
        else:
            model = build_model(ModelConfig(width=64, depth=4, w0=30.0))
            self.problem = WeightsProblem(model, inner_lr=1e-2)
            self.meta_config = MetaConfig(algorithm="maml", inner_steps=2, inner_lr=1e-2, batch_size=3)
            meta = self.problem.init_meta(g)
            noise = None
            self.batch, self.size = 3, 32
            self.fit_config = FitConfig(steps=100, optimizer="adam", lr=1e-3, batch_size=24)
        self.meta, self.noise = to_dtype(meta, dtype), to_dtype(noise, dtype)
        self.coords = grid_coordinates((self.size, self.size), dtype=dtype).reshape(-1, 2)
        self.targets = smooth_images(self.batch, self.size, g).to(dtype)
        self.steps = self.meta_config.inner_steps

    def describe(self) -> str:
        m = self.problem.model.config
        what = ("MSCN gated shifts, MetaSGD" if self.name == "codec" else "MAML on all weights, SGD lr 1e-2")
        return (f"{self.name}: SIREN 2→{m.width}x{m.depth}→3 w0 {m.w0:g}, {what}, {self.steps} inner steps, "
                f"{self.batch} signals of {self.size}x{self.size}, second order")

    def naive(self):
        if self.name == "codec":
            return naive_problem_meta_gradient(self.problem, self.meta, self.coords, self.targets, self.noise,
                                               self.steps)
        grads, losses = naive_meta_gradient(self.problem, self.meta["theta"], self.coords, self.targets,
                                            self.steps, self.meta_config.inner_lr)
        return {"theta": grads}, losses

    def variants(self, compile: bool) -> dict:
        engine = make_meta_gradient(self.problem, self.meta_config, fast=False)
        fast = FastMetaGradient(self.problem, self.steps)
        out = {
            "naive loop": self.naive,
            "engine (vmap)": lambda: engine(self.meta, self.coords, self.targets, self.noise),
            "fast path (eager)": lambda: fast(self.meta, self.coords, self.targets, self.noise),
        }
        if self.name == "codec":
            chunked = FastMetaGradient(self.problem, self.steps, chunk_size=8)
            out["fast path (eager, chunks of 8)"] = lambda: chunked(self.meta, self.coords, self.targets,
                                                                    self.noise)
        if compile:
            compiled = FastMetaGradient(self.problem, self.steps, compile=True)
            out["fast path (compiled)"] = lambda: compiled(self.meta, self.coords, self.targets, self.noise)
            if self.name == "codec":
                compiled8 = FastMetaGradient(self.problem, self.steps, chunk_size=8, compile=True)
                out["fast path (compiled, chunks of 8)"] = lambda: compiled8(self.meta, self.coords, self.targets,
                                                                             self.noise)
        return out


def gradient_differences(reference: dict, grads: dict) -> str:
    return ", ".join(f"{g} {relative_difference(grads[g], reference[g]):.1e}" for g in reference)


def interleaved(fns: dict, rounds: int, log) -> dict[str, list[float]]:
    times = {k: [] for k in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000)
        log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.0f} ms" for k, v in times.items()))
    return times


def table(times: dict[str, list[float]], notes: dict[str, str], baseline: str,
          note_column: str = "meta-gradient vs naive (fp32)") -> list[str]:
    base_med = statistics.median(times[baseline])
    base_min = min(times[baseline])
    lines = [f"| variant | median ms | min ms | speed-up (medians) | speed-up (minima) | {note_column} |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for name, ts in times.items():
        med, low = statistics.median(ts), min(ts)
        lines.append(f"| {name} | {med:.1f} | {low:.1f} | {base_med / med:.2f}x | {base_min / low:.2f}x | "
                     f"{notes.get(name, '')} |")
    return lines


def meta_step_section(name: str, rounds: int, compile: bool, log) -> list[str]:
    setting = Setting(name)
    log(setting.describe())
    reference, _ = setting.naive()
    fns = setting.variants(compile)
    notes = {"naive loop": "(reference)"}
    for variant, fn in fns.items():
        if variant == "naive loop":
            continue
        t0 = time.perf_counter()
        grads, _ = fn()
        first = time.perf_counter() - t0
        notes[variant] = gradient_differences(reference, grads)
        if "compiled" in variant:
            notes[variant] += f" (first call {first:.0f} s: compilation)"
        log(f"  {variant}: {notes[variant]}")
    for fn in fns.values():  # warm-up
        fn()
    times = interleaved(fns, rounds, log)
    exact = Setting(name, torch.float64)
    ref64, _ = exact.naive()
    fast64, _ = FastMetaGradient(exact.problem, exact.steps)(exact.meta, exact.coords, exact.targets,
                                                             exact.noise)
    lines = [f"**{setting.describe()}**", ""] + table(times, notes, "naive loop")
    lines += ["", f"fast path vs naive loop in float64: {gradient_differences(ref64, fast64)}", ""]
    return lines


def fit_section(name: str, signals: int, rounds: int, log) -> list[str]:
    setting = Setting(name)
    problem, coords = setting.problem, setting.coords
    meta = {g: {k: v.detach() for k, v in d.items()} for g, d in setting.meta.items()}
    targets = smooth_images(signals, setting.size, torch.Generator().manual_seed(3))
    cfg = setting.fit_config

    def batched(chunk: int):
        def run():
            fit_signals(problem, meta, coords, targets, replace(cfg, batch_size=chunk))
        return run

    def one_at_a_time():
        # The usual loop: one signal, its own optimiser, autograd.
        noise = problem.eval_noise(meta)
        for target in targets:
            fast = {k: v.clone().requires_grad_(True) for k, v in problem.init_fast(meta).items()}
            if cfg.optimizer == "adam":
                opt = torch.optim.Adam(fast.values(), lr=cfg.lr)
                for _ in range(cfg.steps):
                    opt.zero_grad()
                    problem.loss(fast, meta, coords, target, noise).backward()
                    opt.step()
            else:
                step = problem.step_size(meta, noise)
                for _ in range(cfg.steps):
                    loss = problem.loss(fast, meta, coords, target, noise)
                    grads = torch.autograd.grad(loss, list(fast.values()))
                    with torch.no_grad():
                        for (k, v), g in zip(fast.items(), grads):
                            v -= step[k] * g

    rule = "the learned rule (MetaSGD)" if cfg.optimizer == "inner" else f"Adam lr {cfg.lr:g}"
    title = f"fitting ({name}): {signals} signals x {cfg.steps} steps of {rule}"
    log(title)
    fns = {"one signal at a time": one_at_a_time,
           f"batched (vmap), {cfg.batch_size} at once": batched(cfg.batch_size),
           "batched (vmap), 16 at once": batched(16)}
    for fn in fns.values():
        fn()
    times = interleaved(fns, rounds, log)
    return [f"**{title}**", ""] + table(times, {}, "one signal at a time", note_column="note") + [""]


def keep_freed_memory() -> bool:
    """glibc: serve large tensors from the heap and never hand freed memory back, so a step's
    allocations reuse pages instead of faulting in fresh ones (mallopt; Linux/glibc only)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))


def trainer_section(name: str, steps: int, rounds: int, log) -> list[str]:
    """Outer steps per second of the real ``Trainer`` (data loading, sampling, Adam, logging included),
    with the fast SIREN path and with the torch.func engine (``meta.fast_siren=false``)."""
    import tempfile
    from dataclasses import replace

    from metasparse.config import apply_overrides
    from metasparse.training.trainer import Trainer

    if name == "codec":
        base = apply_overrides(get_preset("codec-photos"), ['data.path="samples"'])
    else:
        base = apply_overrides(get_preset("demo"), ["model.depth=4", 'data.transform="resize:32"'])
    base = apply_overrides(base, [f"train.steps={steps * (rounds + 1)}", f"train.log_every={steps}",
                                  f"train.checkpoint_every={10 * steps * (rounds + 1)}"])
    trainers = {}
    with tempfile.TemporaryDirectory() as folder:
        for label, fast in (("Trainer, torch.func engine", False), ("Trainer, fast SIREN path", True)):
            config = replace(base, meta=replace(base.meta, fast_siren=fast))
            trainers[label] = Trainer(config, Path(folder) / label.replace(" ", "_"), device="cpu")
            trainers[label].run(max_steps=2)  # warm-up: first batches, allocations
        fns = {label: (lambda t=t: t.run(max_steps=steps)) for label, t in trainers.items()}
        times = interleaved(fns, rounds, log)
    title = f"Trainer ({name}): outer steps per second, {steps} steps a round"
    lines = [f"**{title}**", "", "| variant | steps/s (median) | steps/s (best) | speed-up |",
             "| --- | ---: | ---: | ---: |"]
    base_med = statistics.median(times["Trainer, torch.func engine"])
    for label, ts in times.items():
        med = statistics.median(ts)
        lines.append(f"| {label} | {steps / med * 1000:.2f} | {steps / min(ts) * 1000:.2f} "
                     f"| {base_med / med:.2f}x |")
    return lines + [""]


def run(settings: list[str], rounds: int, compile: bool, fit: bool, trainer_steps: int, log) -> list[str]:
    """The whole CPU report as Markdown lines."""
    out: list[str] = []
    for name in settings:
        out += meta_step_section(name, rounds, compile, log)
    if fit:
        if "codec" in settings:
            out += fit_section("codec", 256, max(3, rounds // 2), log)
        if "cpu" in settings:
            out += fit_section("cpu", 24, max(2, rounds // 3), log)
    if trainer_steps:
        for name in settings:
            out += trainer_section(name, trainer_steps, max(3, rounds // 2), log)
    return out
