"""MSCN's experiments as commands, at named scales.

``mscn-functa`` (MSCN Table 1): structured sparse modulations (``mscn-modulations``, a budget of
``k`` gated shifts out of all of the SIREN's) against Functa (a latent of size ``k`` mapped to all
shifts), trained on CelebA faces and tested on the CelebA test split and on CelebA-HQ faces, both
fitted with the meta-learned inner loop (3 steps). Also writes the per-layer share of the kept
modulations and how much of a smaller budget's pattern a larger budget reuses (MSCN Fig. 5).

``mscn-sparse`` (MSCN Section 5.1): sparse per-signal updates (``mscn-updates``, with MetaSGD and
with a fixed inner lr) and the fully sparse variant (``mscn-weights``) against Meta-SparseINR at
equal per-signal cost: Meta-SparseINR's cost is its non-zero weights, MSCN's the non-zero entries
of the weight change ``theta_K - theta_0``. Same SIREN, same w0, same meta-training steps (MSCN gets
as many steps as Meta-SparseINR needed to reach that sparsity), same test-time fit (Adam), each model
fitted under both of Meta-SparseINR's test-time protocols (Adam lr 1e-3 as the paper's appendix says,
lr 1e-4 as the official code evaluates: ``runner.FIT_PROTOCOLS``). MSCN took its Meta-SparseINR
numbers from that paper's authors' own evaluation.

``mscn-ema`` (MSCN Appendix D.2, Table 3): the ``mscn-functa`` MSCN models (trained again if
``--out`` lacks them) fitted to the test faces for as many inner steps as in training and for 10,
reading out the last iterate or an exponential moving average of the iterates with several decays.

Both ``mscn-functa`` and ``mscn-sparse`` also draw a few test faces reconstructed by every method
beside the originals (MSCN Figs. 4b, 6, 7).

Every run is a ``Trainer`` run directory (resumable) and every evaluated point is cached as JSON,
so re-running the command continues where it stopped.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from metasparse.config import DataConfig, ProblemConfig, PruneConfig, RunConfig, TrainConfig
from metasparse.data.signals import SignalSet
from metasparse.errors import ConfigError, DataError
from metasparse.evaluation import evaluate
from metasparse.experiments.base import EXPERIMENTS, Experiment, Outcome, Request
from metasparse.experiments.harness import Harness, UsesHarness
from metasparse.experiments.runner import FIT_PROTOCOLS, protocol_name
from metasparse.meta.engine import MetaConfig
from metasparse.meta.fit import FitConfig
from metasparse.nn.siren import ModelConfig
from metasparse.sparsity.masks import count_nonzero
from metasparse.training.model_file import MetaModel
from metasparse.utils.fileio import save_figure
from metasparse.utils.registry import Registry

FIGURE_DPI = 110


@dataclass(frozen=True)
class MSCNScale:
    name: str
    size: int  # faces are centre-cropped (89 of the half-res set) and resized to size x size
    width: int
    depth: int
    w0: float
    budgets: tuple[int, ...]  # mscn-functa: modulations (= latent sizes for Functa)
    modulation_steps: int
    modulation_batch: int
    modulation_outer_lr: float
    sparse_fractions: tuple[int, ...]  # mscn-sparse: pruning rounds (20 % each) that set the costs
    dense_steps: int
    steps_per_round: int
    fit_steps: int
    fit_lr: float
    train_limit: int | None
    test_limit: int
    l0_weight: float = 0.01  # MSCN tried 0.01 ... 0.0004 on images
    outer_lr: float = 1e-4


MSCN_SCALES: Registry[MSCNScale] = Registry("scale")
for _scale in (
    MSCNScale("cpu", size=32, width=64, depth=4, w0=30.0, budgets=(16, 32, 64, 128), modulation_steps=800,
                     modulation_batch=16, modulation_outer_lr=3e-4, sparse_fractions=(5, 10), dense_steps=300,
                     steps_per_round=100, fit_steps=100, fit_lr=1e-3, train_limit=2000, test_limit=100),
    MSCNScale("gpu", size=64, width=256, depth=8, w0=30.0, budgets=(64, 128, 256, 512, 1024),
                     modulation_steps=20_000, modulation_batch=32, modulation_outer_lr=3e-6,
                     sparse_fractions=(5, 10, 15), dense_steps=10_000, steps_per_round=2_000, fit_steps=100,
                     fit_lr=1e-3, train_limit=None, test_limit=1000, outer_lr=1e-5),
    MSCNScale("paper", size=64, width=512, depth=15, w0=30.0, budgets=(64, 128, 256, 512, 1024),
                       modulation_steps=500_000, modulation_batch=32, modulation_outer_lr=3e-6,
                       sparse_fractions=(5, 10, 15), dense_steps=150_000, steps_per_round=30_000, fit_steps=100,
                       fit_lr=1e-4, train_limit=None, test_limit=1000, outer_lr=1e-5),
):
    MSCN_SCALES.add(_scale.name, _scale)

# Anchors quoted beside our figures (MSCN Table 1, CelebA-HQ 64x64, PSNR in dB).
PAPER_TABLE1 = {
    "Functa": {64: 21.6, 128: 23.5, 256: 25.6, 512: 28.0, 1024: 30.7},
    "MSCN": {64: 21.8, 128: 23.8, 256: 25.7, 512: 28.1, 1024: 30.9},
}


@dataclass
class Result:
    experiment: str
    method: str
    cost: int  # per-signal cost: modulations, latent size or non-zero (changed) weights
    test_set: str
    psnr_mean: float
    psnr_std: float
    psnr_2steps: float
    steps: int
    fit_lr: float | None = None  # the test-time Adam lr; None for the learned inner-loop rule


@dataclass(frozen=True)
class Ctx(UsesHarness):
    harness: Harness
    scale: MSCNScale
    data: str
    hq_data: str | None

    @property
    def out(self) -> Path:
        return self.harness.out

    def face_config(self, split: str, limit: int | None) -> DataConfig:
        return DataConfig(path=self.data, transform=f"crop_resize:89,{self.scale.size}", split=split, limit=limit)

    def signals(self, which: str) -> SignalSet:
        s = self.scale
        if which == "train":
            cfg = self.face_config("celeba_train", s.train_limit)
        elif which == "celeba-test":
            cfg = self.face_config("celeba_test", s.test_limit)
        else:
            cfg = DataConfig(path=self.hq_data, transform=f"resize:{s.size}")
        return self.harness.signals(cfg)

    def test_sets(self) -> list[str]:
        return ["celeba-test"] + (["celeba-hq"] if self.hq_data else [])

    def fit_lrs(self) -> tuple[float, ...]:
        """The Adam test-time protocols: both of Meta-SparseINR's and the scale's own."""
        return tuple(sorted({self.scale.fit_lr, *FIT_PROTOCOLS}, reverse=True))


def _train(ctx: Ctx, config: RunConfig, name: str) -> MetaModel:
    return ctx.harness.train(config, ctx.out / "runs" / name).meta_model()


def _point(ctx: Ctx, experiment: str, method: str, cost: int, model_fn: Callable[[], MetaModel],
           fit: FitConfig, steps: int, cost_of: Callable[[MetaModel], int] | None = None,
           test_sets: list[str] | None = None) -> list[Result]:
    results = []
    model = None
    fit_lr = fit.lr if fit.optimizer == "adam" else None
    for test_set in test_sets or ctx.test_sets():
        stem = method.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "")
        # The scale's own lr keeps the name its points had before the second protocol.
        suffix = f"_lr{fit_lr:.0e}" if fit_lr is not None and fit_lr != ctx.scale.fit_lr else ""
        path = ctx.out / "points" / f"{stem}_{cost}_{test_set}{suffix}.json"

        def compute(test_set: str = test_set) -> Result:
            nonlocal model
            model = model or model_fn()
            report, _ = evaluate(model, ctx.signals(test_set), fit, ctx.device)
            traj = report.psnr_trajectory_mean
            return Result(experiment, method, cost if cost_of is None else cost_of(model), test_set,
                          report.psnr_mean, report.psnr_std, traj[min(2, len(traj) - 1)], steps, fit_lr)

        results.append(ctx.harness.cached(
            path, compute, load=lambda d: Result(**{"fit_lr": fit_lr, **d}), dump=asdict,
            computed=lambda r: (f"  {method:24s} cost {r.cost:6d}  {r.test_set:12s} "
                                f"{r.psnr_mean:6.2f} ± {r.psnr_std:.2f} dB"
                                + (f"  (Adam lr {r.fit_lr:g})" if r.fit_lr is not None else ""))))
    return results


# ------------------------------------------------------------------------------ mscn-functa


def modulation_config(ctx: Ctx, kind: str, budget: int) -> RunConfig:
    s = ctx.scale
    # The budget shrinks over the first half of training so the gates are chosen by the loss, not
    # by their initial ranking (see metasparse.meta.problems.gated).
    problem = (ProblemConfig(kind="mscn-modulations", l0_weight=s.l0_weight, target_count=budget,
                             gate_init_keep=0.9, gate_lr_multiplier=10.0,
                             budget_anneal_steps=s.modulation_steps // 2)
               if kind == "MSCN" else ProblemConfig(kind="functa", latent_dim=budget))
    return RunConfig(
        name=f"{kind.lower()}-{budget}",
        model=ModelConfig(kind="siren", width=s.width, depth=s.depth, w0=s.w0, bias_init="uniform"),
        problem=problem,
        meta=MetaConfig(algorithm="maml", inner_steps=3, inner_lr=1e-2, meta_sgd=True, meta_sgd_init=(0.005, 0.1),
                        outer_lr=s.modulation_outer_lr, batch_size=s.modulation_batch, grad_clip=1.0),
        data=ctx.face_config("celeba_train", s.train_limit),
        train=TrainConfig(steps=s.modulation_steps, log_every=100, checkpoint_every=200),
        fit=FitConfig(steps=3, optimizer="inner", batch_size=128),
    )


def run_mscn_functa(ctx: Ctx) -> tuple[list[Result], dict]:
    results: list[Result] = []
    patterns: dict[int, list[int]] = {}
    for budget in ctx.scale.budgets:
        for kind in ("Functa", "MSCN"):
            config = modulation_config(ctx, kind, budget)
            results += _point(ctx, "mscn-functa", kind, budget, lambda c=config: _train(ctx, c, c.name), config.fit,
                              ctx.scale.modulation_steps)
        mscn = _train(ctx, modulation_config(ctx, "MSCN", budget), f"mscn-{budget}")
        problem = mscn.problem()
        patterns[budget] = problem.kept_modulations(mscn.meta).tolist()
    return results, patterns


def pattern_analysis(patterns: dict[int, list[int]], width: int, depth: int) -> dict:
    per_layer = {b: np.bincount(np.asarray(k, dtype=np.int64) // width, minlength=depth).tolist()
                 for b, k in patterns.items()}
    budgets = sorted(patterns)
    reuse = {f"{a}->{b}": len(set(patterns[a]) & set(patterns[b])) / max(1, len(patterns[a]))
             for a, b in itertools.pairwise(budgets)}
    return {"kept_per_layer": per_layer, "reuse_of_smaller_budget": reuse}


# ------------------------------------------------------------------------------ mscn-ema

# The paper's decays were lost with its Table 3 header; these span "barely smoothed" to "mostly the
# early iterates" for 3-10 steps.
EMA_DECAYS = (None, 0.5, 0.7, 0.8, 0.9)
EMA_STEPS = (3, 10)


def run_mscn_ema(ctx: Ctx) -> list[Result]:
    results: list[Result] = []
    for budget in ctx.scale.budgets:
        config = modulation_config(ctx, "MSCN", budget)
        for steps in EMA_STEPS:
            for decay in EMA_DECAYS:
                fit = replace(config.fit, steps=steps, ema_decay=decay)
                method = f"{steps} steps, " + ("last iterate" if decay is None else f"EMA {decay:g}")
                results += _point(ctx, "mscn-ema", method, budget, lambda c=config: _train(ctx, c, c.name), fit,
                                  steps, test_sets=["celeba-test"])
    return results


# ------------------------------------------------------------------------------ pictures


def reconstruction_grid(ctx: Ctx, models: dict[str, tuple[MetaModel, FitConfig]], path: Path, count: int = 6,
                        test_set: str = "celeba-test") -> Path:
    """The first ``count`` test faces (top row) and each method's fit of them (one row per method)."""
    faces = ctx.signals(test_set).subset(slice(0, count))
    rows = [("original", faces.targets())]
    for label, (model, fit) in models.items():
        report, result = evaluate(model, faces, fit, ctx.device, keep_reconstructions=True)
        rows.append((f"{label}\n{report.psnr_mean:.1f} dB", result.reconstructions.cpu()))
    n = len(faces)
    fig = Figure(figsize=(1.3 * n + 1.4, 1.3 * len(rows)))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (label, images) in enumerate(rows):
        grid = images.reshape(n, *faces.grid_shape, -1).clamp(0, 1).numpy()
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(grid[c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return save_figure(fig, path, dpi=FIGURE_DPI)


# ------------------------------------------------------------------------------ mscn-sparse


def sparse_base_config(ctx: Ctx) -> RunConfig:
    s = ctx.scale
    return RunConfig(
        name="meta-sparse-inr",
        model=ModelConfig(kind="siren", width=s.width, depth=s.depth, w0=s.w0),
        meta=MetaConfig(algorithm="maml", inner_steps=2, inner_lr=1e-2, outer_lr=s.outer_lr, batch_size=3),
        data=ctx.face_config("celeba_train", s.train_limit),
        prune=PruneConfig(rounds=max(s.sparse_fractions), fraction=0.2, steps_per_round=s.steps_per_round),
        train=TrainConfig(steps=s.dense_steps, log_every=100, checkpoint_every=100),
        fit=FitConfig(steps=s.fit_steps, optimizer="adam", lr=s.fit_lr, batch_size=100),
    )


def run_mscn_sparse(ctx: Ctx) -> list[Result]:
    s = ctx.scale
    base = sparse_base_config(ctx)
    results: list[Result] = []
    run_dir = ctx.out / "runs" / "meta-sparse-inr"
    _train(ctx, base, "meta-sparse-inr")
    for rounds in s.sparse_fractions:
        model = MetaModel.load(run_dir / f"round_{rounds:02d}.safetensors")
        count = int(sum(int(m.sum()) for m in model.masks.values())) if model.masks else 0
        steps = s.dense_steps + rounds * s.steps_per_round
        for lr in ctx.fit_lrs():
            results += _point(ctx, "mscn-sparse", "Meta-SparseINR", count, lambda m=model: m,
                              replace(base.fit, lr=lr), steps)
        variants = {
            "MSCN (MetaSGD)": ("mscn-updates", True),
            "MSCN (fixed lr)": ("mscn-updates", False),
            "MSCN fully sparse": ("mscn-weights", True),
        }
        for method, (kind, meta_sgd) in variants.items():
            config = replace(
                base,
                name=f"{kind}-{'metasgd' if meta_sgd else 'fixed'}-{count}",
                problem=ProblemConfig(kind=kind, l0_weight=s.l0_weight, target_count=count, gate_init_keep=0.9,
                                      budget_anneal_steps=steps // 2),
                meta=replace(base.meta, meta_sgd=meta_sgd, meta_sgd_init=(0.001, 0.05)),
                prune=PruneConfig(),
                train=replace(base.train, steps=steps),
            )

            def cost_of(m: MetaModel) -> int:
                problem = m.problem()
                names = problem.model.weight_names
                return count_nonzero(z for n, z in problem.test_gates(m.meta).items() if n in names)

            trained = functools.cache(lambda c=config: _train(ctx, c, c.name))
            for lr in ctx.fit_lrs():
                results += _point(ctx, "mscn-sparse", method, count, trained, replace(base.fit, lr=lr), steps, cost_of)
    return results


# ------------------------------------------------------------------------------ output


def write_results(harness: Harness, results: list[Result], name: str, extra: dict | None = None) -> list[Path]:
    rows = [{**asdict(r), "protocol": "inner loop" if r.fit_lr is None else protocol_name(r.fit_lr)} for r in results]
    table = [{k: f"{v:.4f}" if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    test_sets = sorted({r.test_set for r in results})
    fig = Figure(figsize=(5.5 * len(test_sets), 4))
    axes = fig.subplots(1, len(test_sets), squeeze=False)
    lrs = sorted({r.fit_lr for r in results if r.fit_lr is not None}, reverse=True)
    for ax, test_set in zip(axes[0], test_sets):
        for i, method in enumerate(dict.fromkeys(r.method for r in results)):
            for lr in dict.fromkeys(r.fit_lr for r in results if r.method == method):
                sel = sorted((r for r in results if r.method == method and r.test_set == test_set and r.fit_lr == lr),
                             key=lambda r: r.cost)
                label = method if lr is None else f"{method}, Adam lr {lr:g} ({protocol_name(lr)})"
                ax.errorbar([r.cost for r in sel], [r.psnr_mean for r in sel], yerr=[r.psnr_std for r in sel],
                            marker="o", capsize=3, label=label, color=f"C{i}",
                            linestyle="--" if lr is not None and len(lrs) > 1 and lr == lrs[-1] else "-")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("per-signal cost (modulations / non-zero weight changes)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(test_set)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    files = harness.write_outputs(name, table, {"results": rows, **(extra or {})}, fig, dpi=FIGURE_DPI, indent=2)
    if extra and "patterns" in extra:
        files.append(_plot_patterns(extra["patterns"], harness.out / f"{name}_patterns.png"))
    return files


def _plot_patterns(analysis: dict, path: Path) -> Path:
    per_layer = analysis["kept_per_layer"]
    reuse = analysis.get("reuse_of_smaller_budget", {})
    fig = Figure(figsize=(10, 3.5))
    ax, ax_reuse = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    budgets = sorted(per_layer, key=int)
    layers = len(next(iter(per_layer.values())))
    bottom = np.zeros(len(budgets))
    for layer in range(layers):
        share = np.array([per_layer[b][layer] / int(b) for b in budgets])
        ax.bar([str(b) for b in budgets], share, bottom=bottom, label=f"layer {layer + 1}")
        bottom += share
    ax.set_xlabel("budget (modulations kept)")
    ax.set_ylabel("share of kept modulations")
    ax.set_title("where the kept modulations sit (per SIREN layer)")
    ax.legend(fontsize=7)
    ax_reuse.bar(list(reuse), [100 * v for v in reuse.values()], color="tab:gray")
    ax_reuse.set_ylim(0, 100)
    ax_reuse.set_ylabel("% of the smaller budget's modulations kept")
    ax_reuse.set_title("reuse across budgets")
    ax_reuse.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=FIGURE_DPI)


MSCN_EXPERIMENTS = {
    "mscn-functa": "MSCN sparse modulations vs Functa at equal modulation budgets (MSCN Table 1, Fig. 5)",
    "mscn-sparse": "MSCN sparse updates (MetaSGD, fixed lr, fully sparse) vs Meta-SparseINR at equal cost",
    "mscn-ema": "EMA of the inner-loop iterates at test time, several decays (MSCN App. D.2, Table 3)",
}


def run_mscn_experiment(name: str, scale: str, data: str, out: str | Path, hq_data: str | None = None,
                        device: str | torch.device = "cpu", log: Callable[[str], None] = lambda s: None) -> list[Path]:
    if name not in MSCN_EXPERIMENTS:
        raise ConfigError(f"unknown MSCN experiment {name!r}; available: {', '.join(MSCN_EXPERIMENTS)}")
    MSCN_SCALES.get(scale)  # an unknown name is a ConfigError that lists the known ones
    if not Path(data).is_dir():
        raise DataError(f"{data}: not a folder of CelebA faces (img_align_celeba_halfres)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(Harness(out, torch.device(device), log), MSCN_SCALES[scale], data, hq_data)
    s = ctx.scale
    pictures: list[Path] = []
    if name == "mscn-functa":
        results, patterns = run_mscn_functa(ctx)
        extra = {"scale": asdict(s), "patterns": pattern_analysis(patterns, s.width, s.depth),
                 "paper_table1_celeba_hq64": PAPER_TABLE1}
        shown = {}
        for budget in (min(s.budgets), max(s.budgets)):
            for kind in ("Functa", "MSCN"):
                config = modulation_config(ctx, kind, budget)
                shown[f"{kind} {budget}"] = (_train(ctx, config, config.name), config.fit)
        pictures.append(reconstruction_grid(ctx, shown, out / "mscn_functa_faces.png"))
    elif name == "mscn-ema":
        results = run_mscn_ema(ctx)
        extra = {"scale": asdict(s), "decays": list(EMA_DECAYS), "steps": list(EMA_STEPS)}
    else:
        results = run_mscn_sparse(ctx)
        extra = {"scale": asdict(s)}
        base = sparse_base_config(ctx)
        rounds = max(s.sparse_fractions)
        sparse = MetaModel.load(ctx.out / "runs" / "meta-sparse-inr" / f"round_{rounds:02d}.safetensors")
        count = int(sum(int(m.sum()) for m in sparse.masks.values())) if sparse.masks else 0
        shown = {f"Meta-SparseINR {count}": (sparse, base.fit)}
        for kind, tag, label in (("mscn-updates", "metasgd", "MSCN (MetaSGD)"),
                                 ("mscn-weights", "metasgd", "MSCN fully sparse")):
            shown[f"{label} {count}"] = (MetaModel.load(ctx.out / "runs" / f"{kind}-{tag}-{count}" /
                                                         "model.safetensors"), base.fit)
        pictures.append(reconstruction_grid(ctx, shown, out / "mscn_sparse_faces.png"))
    return write_results(ctx.harness, results, name.replace("-", "_"), extra) + pictures


def _run_mscn(name: str) -> Callable[[Request], Outcome]:
    def run(request: Request) -> Outcome:
        files = run_mscn_experiment(name, request.scale, request.data, request.out, hq_data=request.hq_data,
                                    device=request.device, log=request.log)
        return Outcome([], files)

    return run


for _name, _description in MSCN_EXPERIMENTS.items():
    EXPERIMENTS.add(_name, Experiment(_name, _description, MSCN_SCALES, _run_mscn(_name),
                                      data_note=" (--data: CelebA half-res faces)"))


__all__ = ["MSCN_EXPERIMENTS", "MSCN_SCALES", "PAPER_TABLE1", "run_mscn_experiment"]
