"""Meta-SparseINR's remaining experiments as commands, at the scales of ``runner.SCALES``.

* ``fig4``: one test image fitted from Dense-Narrow and from Meta-SparseINR at the highest
  sparsity, beside the ground truth (Fig. 4; the next two test images as in Appendix C).
* ``appendix-d``: PSNR on training images (seen during meta-training) vs test images (App. D),
  under both test-time protocols (``runner.FIT_PROTOCOLS``; the other variants fit with the scale's).
* ``ffn``: the FFN variant (App. B, Table 1): a fixed Fourier layer (sigma 20) that is never pruned.
* ``reptile``: Reptile instead of MAML as the meta-learner (App. E), fitted for 5x the steps.
* ``bits16``: the fitted sparse networks stored in float16, in bits per pixel, against JPEG's real
  bytes on the same test images (App. F).
* ``cross-dataset``: meta-trained on Imagenette, tested on CelebA, and the reverse (App. G).
* ``winning-ticket``: IMP with rewinding on single photos vs dense-narrow networks, SIREN and FFN
  (Section 5.3), at the scales of ``TICKET_SCALES``.

Run layout under ``OUT`` (pass fig2's ``--out`` to reuse its runs): fig2's own runs in
``OUT/seed_S/`` serve ``fig4``, ``appendix-d``, ``bits16`` and the Imagenette half of
``cross-dataset``; runs of other models live in ``OUT/ffn/``, ``OUT/reptile/``,
``OUT/cross-dataset-celeba/`` and ``OUT/winning-ticket/``. Every meta-training run resumes and every
evaluated point is cached as JSON, so re-running a command continues where it stopped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.func import vmap

from metasparse.config import DataConfig
from metasparse.errors import ConfigError, DataError
from metasparse.evaluation import evaluate
from metasparse.experiments import baselines
from metasparse.experiments.base import EXPERIMENTS, Experiment, Outcome, Request, SummaryTable
from metasparse.experiments.harness import Harness
from metasparse.experiments.runner import (
    METHODS,
    SCALES,
    Context,
    Point,
    Scale,
    aggregate,
    fit_lrs_of,
    new_context,
    point_path,
    protocol_title,
    round_path,
    run_points,
)
from metasparse.meta.fit import fit_batched, signal_copies
from metasparse.metrics import psnr_from_mse, psnr_uint8
from metasparse.nn.siren import CoordinateNetwork, ModelConfig
from metasparse.sparsity import pruning
from metasparse.training.model_file import MetaModel
from metasparse.utils.registry import Registry

VARIANT_EXPERIMENTS: dict[str, str] = {
    "fig4": "Fig. 4: a test image fitted by Dense-Narrow and by Meta-SparseINR at the highest sparsity "
            "(reuses fig2's runs in --out)",
    "appendix-d": "App. D: PSNR on training vs test images (generalisation gap), Meta-SparseINR and Dense-Narrow",
    "ffn": "App. B, Table 1: Fourier-feature network (fixed sigma-20 layer, not pruned) instead of SIREN",
    "reptile": "App. E: Reptile as the meta-learner; PSNR after the usual and after 5x the fitting steps",
    "bits16": "App. F: fitted sparse networks in float16, bits per pixel vs JPEG (real bytes) on the test images",
    "cross-dataset": "App. G: meta-train on Imagenette (--data), test on CelebA (--data2), and the reverse",
    "winning-ticket": "Sec. 5.3: IMP with rewinding vs dense-narrow on single photos (--data), SIREN and FFN",
}

FIG4_IMAGES = 3  # the paper's Fig. 4 shows the first test image, Appendix C the next two
REPTILE_FIT_FACTOR = 5  # App. E fits for 500 steps where the main text fits for 100
PAPER_FFN_TABLE1 = {  # CelebA, PSNR after 100 steps, by share of surviving weights
    "Meta-SparseINR": {0.8: 24.88, 0.64: 24.70, 0.512: 24.69, 0.41: 23.91, 0.328: 23.03, 0.262: 22.12,
                       0.21: 21.19, 0.168: 19.13, 0.134: 18.09, 0.1074: 18.41},
    "Random Pruning": {0.8: 25.15, 0.64: 24.05, 0.512: 22.80, 0.41: 21.54, 0.328: 20.02, 0.262: 18.88,
                       0.21: 18.06, 0.168: 17.20, 0.134: 16.51, 0.1074: 15.88},
    "Dense-Narrow": {0.808: 22.27, 0.648: 21.36, 0.517: 20.80, 0.411: 19.39, 0.335: 18.04, 0.267: 17.87,
                     0.251: 16.62, 0.206: 15.90, 0.166: 15.11, 0.13: 14.95},
    "dense meta-learned": 25.41, "dense random init": 16.85,
}


# ------------------------------------------------------------------------------ shared helpers


def _rows(points: list[Point], **extra) -> list[dict]:
    """``runner.aggregate`` with ``extra`` columns."""
    return [{**r, **extra} for r in aggregate(points)]


def _write(harness: Harness, stem: str, rows: list[dict], info: dict, draw: Callable[[], Figure]) -> list[Path]:
    return harness.write_outputs(stem, rows, {**info, "rows": rows}, draw())


def _curve(ax, rows: list[dict], label: str, y: str = "psnr_mean", yerr: str | None = "psnr_std_signals", **style):
    rows = sorted(rows, key=lambda r: r["nonzero_weights"])
    if not rows:
        return
    err = [r[yerr] for r in rows] if yerr else None
    style = {"marker": "o", "ms": 3, "capsize": 2, **style}
    ax.errorbar([r["nonzero_weights"] for r in rows], [r[y] for r in rows], yerr=err, label=label, **style)


def _finish_axes(ax, xlabel: str = "non-zero weights", ylabel: str = "PSNR (dB)", log: bool = True) -> None:
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _highest(rows: list[dict]) -> list[dict]:
    k = max(r["round"] for r in rows)
    return [r for r in rows if r["round"] == k]


def _meta_sparse_inr(ctx: Context, seed: int, k: int) -> MetaModel:
    """Algorithm 1's model after ``k`` rounds, from fig2's run directory (trained or resumed if needed)."""
    run_dir = ctx.train(ctx.base_config(seed), ctx.out / f"seed_{seed}" / "meta-sparse-inr").run_dir
    return MetaModel.load(round_path(run_dir, k), ctx.device)


def _dense_narrow(ctx: Context, seed: int, k: int) -> MetaModel:
    base = ctx.base_config(seed)
    if k == 0:
        return _meta_sparse_inr(ctx, seed, 0)
    w = baselines.narrow_widths(base.model, ctx.scale.rounds, base.prune.fraction)[k]
    return ctx.train(baselines.dense_narrow_config(base, w), ctx.out / f"seed_{seed}" / f"dense-narrow-w{w}"
                  ).meta_model()


# ------------------------------------------------------------------------------ fig4


def run_fig4(ctx: Context) -> tuple[list[dict], list[Path]]:
    s = ctx.scale
    k, seed = s.rounds, 0
    val = ctx.val_set()
    images = val.subset(slice(0, min(FIG4_IMAGES, len(val))))
    models = {"Dense-Narrow": _dense_narrow(ctx, seed, k), "Meta-SparseINR": _meta_sparse_inr(ctx, seed, k)}
    names = images.names or [str(i) for i in range(len(images))]
    recons, rows = {}, []
    for method, model in models.items():
        report, fit = evaluate(model, images, model.config.fit, ctx.device, keep_reconstructions=True)
        recons[method] = images.unflatten(fit.reconstructions).cpu().numpy()
        for i, psnr in enumerate(report.psnr_per_signal):
            rows.append({"image": names[i], "method": method, "round": k,
                         "width": model.config.model.width, "nonzero_weights": report.nonzero_weights,
                         "psnr": round(psnr, 3)})
    truth = images.values.float().numpy() / 255.0

    def draw() -> Figure:
        n = len(images)
        fig = Figure(figsize=(7.5, 2.6 * n))
        axes = fig.subplots(n, 3, squeeze=False)
        for i in range(n):
            panels = [("ground truth", truth[i], "")]
            for method in ("Dense-Narrow", "Meta-SparseINR"):
                r = next(x for x in rows if x["method"] == method and x["image"] == names[i])
                title = f"{method}\n{r['nonzero_weights']:,} weights" + (
                    f" (width {r['width']})" if method == "Dense-Narrow" else "")
                panels.append((title, recons[method][i], f"{r['psnr']:.2f} dB"))
            for ax, (title, img, label) in zip(axes[i], panels):
                ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_xlabel(label)
                if i == 0:
                    ax.set_title(title, fontsize=9)
            axes[i][0].set_ylabel(names[i], fontsize=7)
        fig.suptitle(f"after {s.fit_steps} fitting steps, round {k} ({s.name} scale, {s.size}x{s.size})", fontsize=9)
        fig.tight_layout()
        return fig

    files = _write(ctx.harness, "fig4", rows, {"experiment": "fig4", "scale": asdict(s), "seed": seed}, draw)
    return rows, files


# ------------------------------------------------------------------------------ appendix-d


def run_appendix_d(ctx: Context) -> tuple[list[dict], list[Path]]:
    s = ctx.scale
    methods = ("Meta-SparseINR", "Dense-Narrow")
    val_ctx = replace(ctx, methods=methods)
    val_points = run_points(val_ctx)
    # The first test-set-sized slice of the very images meta-training sampled from.
    train_cfg = ctx.base_config(0).data
    limits = [x for x in (s.val_limit, train_cfg.limit) if x is not None]
    limit = min(limits) if limits else None
    train_ctx = replace(ctx, methods=methods, test_data=replace(train_cfg, limit=limit), points_name="points-train")
    train_points = run_points(train_ctx)
    val_rows = {(r["method"], r["round"], r["fit_lr"]): r for r in _rows(val_points)}
    rows = []
    for r in _rows(train_points):
        v = val_rows[(r["method"], r["round"], r["fit_lr"])]
        rows.append({"method": r["method"], "round": r["round"], "fit_lr": r["fit_lr"], "protocol": r["protocol"],
                     "width": r["width"],
                     "nonzero_weights": r["nonzero_weights"],
                     "psnr_train": r["psnr_mean"], "psnr_train_std_signals": r["psnr_std_signals"],
                     "psnr_test": v["psnr_mean"], "psnr_test_std_signals": v["psnr_std_signals"],
                     "gap_train_minus_test": round(r["psnr_mean"] - v["psnr_mean"], 3),
                     "psnr_train_std_seeds": r["psnr_std"], "psnr_test_std_seeds": v["psnr_std"], "seeds": r["seeds"]})

    def draw() -> Figure:
        lrs = fit_lrs_of(rows)
        fig = Figure(figsize=(6 * len(lrs), 4.2))
        for ax, lr in zip(fig.subplots(1, len(lrs), squeeze=False)[0], lrs):
            for i, method in enumerate(methods):
                sel = [r for r in rows if r["method"] == method and r["fit_lr"] == lr]
                for split, style in (("train", {"linestyle": "--", "marker": "s", "mfc": "none", "elinewidth": 0.6}),
                                     ("test", {"linestyle": "-"})):
                    _curve(ax, [{**r, "psnr_mean": r[f"psnr_{split}"], "e": r[f"psnr_{split}_std_signals"]}
                                for r in sel], f"{method}, {split} images", yerr="e", color=f"C{i}", **style)
            _finish_axes(ax, ylabel="PSNR (dB)")
            ax.set_title(f"App. D ({s.name} scale): {protocol_title(lr, s.fit_steps)}", fontsize=9)
        fig.tight_layout()
        return fig

    info = {"experiment": "appendix-d", "scale": asdict(s), "train_images": asdict(train_ctx.test_data),
            "test_images": val_ctx.val_data}
    return rows, _write(ctx.harness, "appendix_d", rows, info, draw)


# ------------------------------------------------------------------------------ ffn and reptile


def _plot_methods(rows: list[dict], title: str, ylabel: str, extra: list[tuple[list[dict], str, dict]] = ()):
    def draw() -> Figure:
        fig = Figure(figsize=(6, 4.2))
        ax = fig.subplots()
        for method in METHODS:
            _curve(ax, [r for r in rows if r["method"] == method], method)
        for sel, label, style in extra:
            _curve(ax, sel, label, **style)
        _finish_axes(ax, ylabel=ylabel)
        ax.set_title(title)
        fig.tight_layout()
        return fig

    return draw


def run_ffn(ctx: Context) -> tuple[list[dict], list[Path]]:
    s = replace(ctx.scale, model_kind="ffn")
    c = replace(ctx, scale=s, out=ctx.out / "ffn", methods=("Meta-SparseINR", "Random Pruning", "Dense-Narrow",
                                                                    "Scratch"))
    points = run_points(c)
    dense = CoordinateNetwork(c.base_config(0).model).num_weights()
    rows = _rows(points)
    for r in rows:
        r["surviving"] = round(r["nonzero_weights"] / dense, 4)
    info = {"experiment": "ffn", "scale": asdict(s), "dense_weights": dense, "paper_table1_celeba": PAPER_FFN_TABLE1,
            "points": [asdict(p) for p in points]}
    draw = _plot_methods(rows, f"App. B: FFN, sigma {s.fourier_sigma:g} ({s.name} scale, {s.size}x{s.size})",
                         f"PSNR (dB) after {s.fit_steps} steps")
    return rows, _write(ctx.harness, "ffn", rows, info, draw)


def run_reptile(ctx: Context) -> tuple[list[dict], list[Path]]:
    base = ctx.scale
    s = replace(base, algorithm="reptile", fit_steps=REPTILE_FIT_FACTOR * base.fit_steps)
    c = replace(ctx, scale=s, out=ctx.out / "reptile", methods=("Meta-SparseINR", "Random Pruning", "Dense-Narrow"))
    points = run_points(c)
    rows = _rows(points, algorithm="reptile")
    for r in rows:
        ps = [p for p in points if p.method == r["method"] and p.round == r["round"]]
        r[f"psnr_after_{base.fit_steps}"] = round(float(np.mean([p.trajectory[base.fit_steps] for p in ps])), 3)
    # fig2's MAML points, when fig2 ran in the same --out, for a side-by-side at the usual budget.
    maml = []
    for seed in range(ctx.seeds):
        for k in range(base.rounds + 1):
            path = point_path(ctx, seed, "Meta-SparseINR", k, "points")
            if path.exists():
                maml.append(Point(**{"fit_lr": base.fit_lr, **json.loads(path.read_text())}))
    maml_rows = _rows(maml, algorithm="maml") if maml else []
    for r in maml_rows:
        r[f"psnr_after_{base.fit_steps}"] = r["psnr_mean"]
    at = f"psnr_after_{base.fit_steps}"

    def draw() -> Figure:
        fig = Figure(figsize=(11, 4.2))
        a, b = fig.subplots(1, 2)
        for method in METHODS:
            sel = [r for r in rows if r["method"] == method]
            _curve(a, [{**r, "psnr_mean": r[at]} for r in sel], method, yerr=None)
            _curve(b, sel, method)
        if maml_rows:
            _curve(a, maml_rows, "Meta-SparseINR with MAML (fig2)", yerr=None, color="k", linestyle=":")
        _finish_axes(a, ylabel=f"PSNR (dB) after {base.fit_steps} steps")
        _finish_axes(b, ylabel=f"PSNR (dB) after {s.fit_steps} steps")
        a.set_title(f"Reptile, {base.fit_steps} fitting steps ({s.name} scale)")
        b.set_title(f"Reptile, {s.fit_steps} fitting steps (App. E, Fig. 8)")
        fig.tight_layout()
        return fig

    info = {"experiment": "reptile", "scale": asdict(s), "maml_rows_from_fig2": maml_rows,
            "points": [asdict(p) for p in points]}
    return rows, _write(ctx.harness, "reptile", rows, info, draw)


# ------------------------------------------------------------------------------ bits16


def mask_bits(total: int, kept: int) -> int:
    """Bits to name which ``kept`` of ``total`` positions survive (enumerative code: log2 C(n, k))."""
    if kept in (0, total):
        return 0
    return math.ceil((math.lgamma(total + 1) - math.lgamma(kept + 1) - math.lgamma(total - kept + 1)) / math.log(2))


def _bits16_point(ctx: Context, model: MetaModel, k: int, seed: int) -> dict:
    val = ctx.val_set()
    report, fit = evaluate(model, val, model.config.fit, ctx.device)
    problem = model.problem(ctx.device)
    meta = {g: {n: v.to(ctx.device) for n, v in d.items()} for g, d in model.meta.items()}
    coords = val.flat_coords().to(ctx.device)
    original = val.values.reshape(len(val), -1, val.channels).to(ctx.device)
    psnr = {}
    for bits, cast in ((32, torch.float32), (16, torch.float16)):
        chunks = []
        for start in range(0, len(val), model.config.fit.batch_size):
            fast = {n: v[start:start + model.config.fit.batch_size].to(cast).float() for n, v in fit.fast.items()}
            with torch.no_grad():
                pred = vmap(lambda f: problem.predict(f, meta, coords))(fast)
            chunks.append((pred.clamp(0, 1) * 255).round())
        psnr[bits] = psnr_uint8(torch.cat(chunks), original).cpu()
    total = problem.model.num_weights()
    nonzero, biases = int(report.nonzero_weights), int(report.biases)
    pixels = val.num_points
    mbits = mask_bits(total, nonzero)
    return {"round": k, "seed": seed, "nonzero_weights": nonzero, "biases": biases, "total_weights": total,
            "pixels": pixels, "mask_bits": mbits,
            "bpp16": (16 * (nonzero + biases) + mbits) / pixels, "bpp32": (32 * (nonzero + biases) + mbits) / pixels,
            "bpp16_shared_mask": 16 * (nonzero + biases) / pixels, "bpp16_paper": 16 * nonzero / pixels,
            "psnr_float": report.psnr_mean, "psnr32": float(psnr[32].mean()), "psnr16": float(psnr[16].mean()),
            "psnr16_per_image": [round(float(v), 4) for v in psnr[16]],
            "psnr32_per_image": [round(float(v), 4) for v in psnr[32]]}


JPEG_SUBSAMPLINGS = ("4:2:0", "4:4:4")  # Pillow's default, and the one that reaches high PSNR


def jpeg_sweep(images: np.ndarray, qualities=range(1, 101), subsamplings=JPEG_SUBSAMPLINGS) -> dict[str, np.ndarray]:
    """JPEG (Pillow, real file bytes) of every image at every (chroma subsampling, quality): bpp and
    PSNR, (N, settings) each, with the settings' ``quality`` and ``subsampling`` as (settings,)."""
    from metasparse.codec.baselines import encode_decode

    settings = [(sub, q) for sub in subsamplings for q in qualities]
    bpp = np.zeros((len(images), len(settings)))
    psnr = np.zeros_like(bpp)
    for i, img in enumerate(images):
        for j, (sub, q) in enumerate(settings):
            decoded, nbytes = encode_decode("jpeg", img, q, chroma_subsampling=sub)
            bpp[i, j] = 8 * nbytes / (img.shape[0] * img.shape[1])
            psnr[i, j] = float(psnr_uint8(torch.tensor(decoded)[None], torch.tensor(img)[None])[0])
    return {"quality": np.array([q for _, q in settings]), "subsampling": np.array([sub for sub, _ in settings]),
            "bpp": bpp, "psnr": psnr}


def jpeg_at_budget(sweep: dict[str, np.ndarray], bpp: float) -> dict:
    """Per image, the JPEG file of highest PSNR among those of at most ``bpp`` (the smallest file where
    none fits); means over images, how many images had no file within the budget, and how many
    could not use the budget up (even JPEG's largest file is smaller)."""
    q, b, p = sweep["quality"], sweep["bpp"], sweep["psnr"]
    picks = []
    for i in range(b.shape[0]):
        fits = np.nonzero(b[i] <= bpp)[0]
        picks.append(fits[np.argmax(p[i, fits])] if len(fits) else int(np.argmin(b[i])))
    rows = np.arange(b.shape[0])
    picks = np.array(picks)
    return {"jpeg_quality_mean": round(float(q[picks].mean()), 2),
            "jpeg_444_share": round(float((sweep["subsampling"][picks] == "4:4:4").mean()), 3),
            "jpeg_bpp": round(float(b[rows, picks].mean()), 4), "jpeg_psnr": round(float(p[rows, picks].mean()), 3),
            "jpeg_images_over_budget": int((b[rows, picks] > bpp).sum()),
            "jpeg_images_below_budget_at_max": int((b.max(axis=1) < bpp).sum())}


def jpeg_bpp_for_psnr(sweep: dict[str, np.ndarray], psnr: np.ndarray) -> tuple[float, int]:
    """Mean bpp of the smallest JPEG file reaching each image's ``psnr``, over the images where one does."""
    b, p = sweep["bpp"], sweep["psnr"]
    found = []
    for i in range(b.shape[0]):
        ok = np.nonzero(p[i] >= psnr[i])[0]
        if len(ok):
            found.append(b[i, ok].min())
    return (round(float(np.mean(found)), 4) if found else float("nan")), len(found)


def run_bits16(ctx: Context) -> tuple[list[dict], list[Path]]:
    s = ctx.scale
    points = []
    for seed in range(ctx.seeds):
        for k in range(s.rounds + 1):
            path = ctx.out / f"seed_{seed}" / "points-bits16" / f"Meta-SparseINR_r{k:02d}.json"
            point = ctx.harness.cached(path, lambda k=k, seed=seed: _bits16_point(ctx, _meta_sparse_inr(ctx, seed, k),
                                                                                    k, seed))
            ctx.log(f"  round {k:2d}: {point['bpp16']:8.3f} bpp (float16)  {point['psnr16']:6.2f} dB")
            points.append(point)
    val = ctx.val_set()
    sweep = jpeg_sweep(val.values.numpy())
    rows = []
    for k in range(s.rounds + 1):
        ps = [p for p in points if p["round"] == k]
        row = {"method": "Meta-SparseINR", "round": k}
        for key in ("nonzero_weights", "biases", "mask_bits", "bpp16", "bpp32", "bpp16_shared_mask", "bpp16_paper",
                    "psnr_float", "psnr32", "psnr16"):
            row[key] = round(float(np.mean([p[key] for p in ps])), 4)
        row["psnr16_minus_psnr32"] = round(row["psnr16"] - row["psnr32"], 4)
        row.update(jpeg_at_budget(sweep, row["bpp16"]))
        row["jpeg_bpp_at_inr_psnr16"], row["jpeg_images_reaching_inr_psnr16"] = jpeg_bpp_for_psnr(
            sweep, np.mean([p["psnr16_per_image"] for p in ps], axis=0))
        rows.append(row)
    curve = [{"subsampling": str(sub), "quality": int(q), "bpp": round(float(sweep["bpp"][:, j].mean()), 4),
              "psnr": round(float(sweep["psnr"][:, j].mean()), 3)}
             for j, (sub, q) in enumerate(zip(sweep["subsampling"], sweep["quality"]))]

    def draw() -> Figure:
        fig = Figure(figsize=(6, 4.2))
        ax = fig.subplots()
        for sub, color in zip(JPEG_SUBSAMPLINGS, ("C7", "C5")):
            sel = [c for c in curve if c["subsampling"] == sub]
            ax.plot([c["bpp"] for c in sel], [c["psnr"] for c in sel], "-", color=color,
                    label=f"JPEG {sub} (quality 1-100)")
        ax.plot([r["bpp32"] for r in rows], [r["psnr32"] for r in rows], "o--", ms=4, label="Meta-SparseINR, float32")
        ax.plot([r["bpp16"] for r in rows], [r["psnr16"] for r in rows], "s-", ms=4, label="Meta-SparseINR, float16")
        ax.plot([r["jpeg_bpp"] for r in rows], [r["jpeg_psnr"] for r in rows], "x", color="C3", ms=6,
                label="JPEG at the float16 budget")
        _finish_axes(ax, xlabel="bits per pixel (real JPEG files; weights + biases + mask for the INR)")
        ax.set_title(f"App. F ({s.name} scale, {s.size}x{s.size}, {len(val)} test images)")
        fig.tight_layout()
        return fig

    info = {"experiment": "bits16", "scale": asdict(s), "jpeg_curve": curve, "points": points}
    return rows, _write(ctx.harness, "bits16", rows, info, draw)


# ------------------------------------------------------------------------------ cross-dataset


def celeba_config(path: str, scale: Scale, split: str, limit: int | None) -> DataConfig:
    """CelebA faces at the scale's size: the largest centred square (the paper's 178 crop of the
    178x218 originals, 89 of the half-res ones), resized."""
    return DataConfig(path=path, transform=f"resize_short_crop:{scale.size},{scale.size}", split=split, limit=limit)


def run_cross_dataset(ctx: Context, data2: str) -> tuple[list[dict], list[Path]]:
    s = ctx.scale
    methods = ("Meta-SparseINR", "Random Pruning", "Dense-Narrow")
    celeba_train = celeba_config(data2, s, "celeba_train", s.train_limit)
    celeba_test = celeba_config(data2, s, "celeba_test", s.val_limit)
    imagenette_in = replace(ctx, methods=methods)
    imagenette_x = replace(ctx, methods=methods, test_data=celeba_test, points_name="points-celeba")
    celeba_root = ctx.out / "cross-dataset-celeba"
    celeba_in = replace(ctx, out=celeba_root, methods=methods, train_data=celeba_train, test_data=celeba_test,
                        points_name="points-celeba")
    celeba_x = replace(ctx, out=celeba_root, methods=methods, train_data=celeba_train,
                       points_name="points-imagenette")
    runs = (("Imagenette", "Imagenette", imagenette_in), ("Imagenette", "CelebA", imagenette_x),
            ("CelebA", "CelebA", celeba_in), ("CelebA", "Imagenette", celeba_x))
    rows = []
    for train, test, c in runs:
        rows += _rows(run_points(c), train_set=train, test_set=test, in_domain=train == test)

    def draw() -> Figure:
        fig = Figure(figsize=(11, 4.2))
        axes = fig.subplots(1, 2)
        for ax, test in zip(axes, ("Imagenette", "CelebA")):
            for i, method in enumerate(methods):
                for r_train, style in (("Imagenette", {"linestyle": "-"}),
                                       ("CelebA", {"linestyle": "--", "marker": "s", "mfc": "none"})):
                    sel = [r for r in rows if r["method"] == method and r["train_set"] == r_train
                           and r["test_set"] == test]
                    _curve(ax, sel, f"{method}, trained on {r_train}", color=f"C{i}", **style)
            _finish_axes(ax, ylabel=f"PSNR (dB) after {s.fit_steps} steps")
            ax.set_title(f"tested on {test} ({s.name} scale)")
        fig.tight_layout()
        return fig

    info = {"experiment": "cross-dataset", "scale": asdict(s), "celeba_train": asdict(celeba_train),
            "celeba_test": asdict(celeba_test), "imagenette_test": ctx.val_data}
    return rows, _write(ctx.harness, "cross_dataset", rows, info, draw)


# ------------------------------------------------------------------------------ winning-ticket


@dataclass(frozen=True)
class TicketScale:
    """Section 5.3: fitting single photos, no meta-learning."""

    name: str
    size: int  # centre crop size x size of each photo
    width: int
    depth: int
    steps: int  # Adam steps per training (the paper: 50,000)
    lr: float
    rounds: int  # IMP rounds of 20 %
    images: int
    w0: float = 30.0
    sigma: float = 20.0
    seed: int = 0


TICKET_SCALES: Registry[TicketScale] = Registry("scale")
for _scale in (
    # A few minutes on one CPU core: 64x64 crops, a 4x64 network, 8 rounds.
    TicketScale("cpu", size=64, width=64, depth=4, steps=500, lr=1e-3, rounds=8, images=3),
    TicketScale("gpu", size=256, width=256, depth=4, steps=5_000, lr=1e-4, rounds=15, images=24),
    # The paper: 512x512 crops of the Kodak images (24), 50k full-batch Adam steps at lr 1e-4.
    TicketScale("paper", size=512, width=256, depth=4, steps=50_000, lr=1e-4, rounds=15, images=24),
):
    TICKET_SCALES.add(_scale.name, _scale)

TICKET_ARCHS = ("SIREN", "FFN")


def _ticket_model(ts: TicketScale, arch: str, width: int | None = None) -> ModelConfig:
    return ModelConfig(kind="siren" if arch == "SIREN" else "ffn", width=width or ts.width, depth=ts.depth, w0=ts.w0,
                       fourier_sigma=ts.sigma)


def _fit_batched(net: CoordinateNetwork, theta0, masks, coords, targets, ts: TicketScale):
    """Full-batch Adam on every photo at once from ``theta0`` (masked per photo: masks are (N, ...)).
    The loss is the sum of per-photo MSEs, so each photo's fit is its own. Returns the PSNR before
    every step and after the last, (steps + 1, N), and the trained parameters."""
    masks = masks or {}
    params = signal_copies(theta0, targets.shape[0], masks)

    def loss(p, m, t):
        return ((net.apply(p, coords, masks=m or None) - t) ** 2).mean()

    batched = vmap(loss)
    fit = fit_batched(batched, params, targets, [ts.steps], "adam", ts.lr, masks=masks)
    with torch.no_grad():
        final = batched(params, masks, targets)
    return psnr_from_mse(torch.stack([*fit.losses, final])), {n: v.detach() for n, v in params.items()}


def _fits(traj: torch.Tensor, nonzero: list[int]) -> list[dict]:
    # The paper reports the peak PSNR: late in training the PSNR oscillates.
    return [{"nonzero_weights": nonzero[i], "psnr_peak": float(traj[:, i].max()), "psnr_final": float(traj[-1, i])}
            for i in range(traj.shape[1])]


def _imp_rounds(ts: TicketScale, arch: str, coords, targets, root: Path, log) -> list[list[dict]]:
    """Frankle & Carbin, per photo: train, prune 20 % of the surviving weights by global magnitude,
    rewind the survivors to their initial values, train again. Each round is cached with the masks
    it leaves, so an interrupted chain continues. Returns [round][photo] fits."""
    from metasparse.utils import tensorfile as ckpt

    net = CoordinateNetwork(_ticket_model(ts, arch))
    theta0 = net.init(torch.Generator().manual_seed(ts.seed), coords.device)
    masks = None
    rounds = []
    for k in range(ts.rounds + 1):
        path = root / f"{arch}_imp_r{k:02d}.safetensors"
        if path.exists():
            flat, info = ckpt.load(path, coords.device)
            fits, masks = info["fits"], ckpt.unflatten(flat, "next_masks/") or None
        else:
            traj, trained = _fit_batched(net, theta0, masks, coords, targets, ts)
            nonzero = ([int(v) for v in sum(m.flatten(1).sum(dim=1) for m in masks.values())] if masks
                       else [net.num_weights()] * targets.shape[0])
            fits = _fits(traj, nonzero)
            following = (pruning.global_magnitude_prune_batched(trained, masks, 0.2, prunable=net.weight_names)
                         if k < ts.rounds else {})
            ckpt.save(path, {"next_masks": following}, {"round": k, "fits": fits})
            masks = following or None
        log(f"  {arch} IMP round {k}: {fits[0]['nonzero_weights']:6d} weights, peak PSNR "
            + " ".join(f"{f['psnr_peak']:.2f}" for f in fits))
        rounds.append(fits)
    return rounds


def _narrow_fit(ts: TicketScale, arch: str, width: int, coords, targets) -> list[dict]:
    net = CoordinateNetwork(_ticket_model(ts, arch, width))
    theta = net.init(torch.Generator().manual_seed(ts.seed), coords.device)
    traj, _ = _fit_batched(net, theta, None, coords, targets, ts)
    return _fits(traj, [net.num_weights()] * targets.shape[0])


def run_winning_ticket(scale: TicketScale, data: str, harness: Harness) -> tuple[list[dict], list[Path]]:
    from metasparse.data.images import load_images

    ts, log = scale, harness.log
    photos = load_images(data, transform=f"center_crop:{ts.size}", limit=ts.images)
    coords = photos.flat_coords().to(harness.device)
    targets = photos.targets().to(harness.device)
    root = harness.out / "winning-ticket" / "points"
    rows = []
    for arch in TICKET_ARCHS:
        imp = _imp_rounds(ts, arch, coords, targets, root, log)
        widths = baselines.narrow_widths(_ticket_model(ts, arch), ts.rounds)
        narrow = [imp[0]]  # at full width the dense network is IMP's round 0 (same seed)
        for w in widths[1:]:
            fits = harness.cached(root / f"{arch}_narrow_w{w}.json", lambda w=w, arch=arch: _narrow_fit(
                ts, arch, w, coords, targets))
            log(f"  {arch} dense-narrow width {w}: {fits[0]['nonzero_weights']:6d} weights, peak PSNR "
                + " ".join(f"{f['psnr_peak']:.2f}" for f in fits))
            narrow.append(fits)
        for k in range(ts.rounds + 1):
            for method, fits, width in (("IMP (winning ticket)", imp[k], ts.width),
                                        ("Dense-Narrow", narrow[k], widths[k])):
                peak = np.array([f["psnr_peak"] for f in fits])
                final = np.array([f["psnr_final"] for f in fits])
                rows.append({"arch": arch, "method": method, "round": k, "width": width,
                             "nonzero_weights": round(float(np.mean([f["nonzero_weights"] for f in fits])), 1),
                             "psnr_peak_mean": round(float(peak.mean()), 3), "psnr_peak_std": round(float(peak.std()), 3),
                             "psnr_final_mean": round(float(final.mean()), 3), "images": len(fits)})

    def draw() -> Figure:
        fig = Figure(figsize=(11, 4.2))
        axes = fig.subplots(1, 2)
        for ax, arch in zip(axes, TICKET_ARCHS):
            for method in ("Dense-Narrow", "IMP (winning ticket)"):
                _curve(ax, [r for r in rows if r["arch"] == arch and r["method"] == method], method,
                       y="psnr_peak_mean", yerr="psnr_peak_std")
            _finish_axes(ax, ylabel=f"peak PSNR (dB) in {ts.steps} steps")
            extra = f"w0 = {ts.w0:g}" if arch == "SIREN" else f"sigma = {ts.sigma:g}"
            ax.set_title(f"Sec. 5.3, {arch} ({extra}), {len(photos)} photos {ts.size}x{ts.size}")
        fig.tight_layout()
        return fig

    info = {"experiment": "winning-ticket", "scale": asdict(ts), "images": photos.names}
    return rows, _write(harness, "winning_ticket", rows, info, draw)


# ------------------------------------------------------------------------------ entry point


SUMMARY_COLUMNS: dict[str, tuple[str, ...]] = {
    "fig4": ("image", "method", "nonzero_weights", "psnr"),
    "appendix-d": ("method", "round", "fit_lr", "nonzero_weights", "psnr_train", "psnr_test",
                   "gap_train_minus_test"),
    "ffn": ("method", "round", "width", "nonzero_weights", "surviving", "psnr_mean", "psnr_std_signals"),
    "reptile": ("method", "round", "nonzero_weights", "psnr_after_*", "psnr_mean"),
    "bits16": ("round", "nonzero_weights", "bpp16", "psnr32", "psnr16", "jpeg_bpp", "jpeg_psnr"),
    "cross-dataset": ("train_set", "test_set", "method", "nonzero_weights", "psnr_mean"),
    "winning-ticket": ("arch", "method", "round", "nonzero_weights", "psnr_peak_mean"),
}


def summary(name: str, rows: list[dict]) -> list[dict]:
    """What the command prints: the main columns, at the highest sparsity where there are many rows."""
    shown = rows if name in ("fig4", "bits16") else _highest(rows)
    columns = [k for c in SUMMARY_COLUMNS[name] for k in shown[0]
               if k == c or (c.endswith("*") and k.startswith(c[:-1]))] or list(shown[0])
    return [{c: r[c] for c in columns} for r in shown]


def run_variant_experiment(
    name: str,
    scale: Scale | TicketScale | str,
    data: str,
    out: str | Path,
    val_data: str | None = None,
    data2: str | None = None,
    seeds: int | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = lambda s: None,
) -> tuple[list[dict], list[Path]]:
    """Run (or resume) experiment ``name``; returns its table rows and the files written."""
    if name not in VARIANT_EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; available: {', '.join(VARIANT_EXPERIMENTS)}")
    scales = TICKET_SCALES if name == "winning-ticket" else SCALES
    if isinstance(scale, str):
        scale = scales.get(scale)
    if not Path(data).exists():
        raise DataError(f"{data}: no such file or folder")
    if name == "winning-ticket":
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        return run_winning_ticket(scale, data, Harness(out, torch.device(device), log))
    if name == "cross-dataset" and not data2:
        raise ConfigError("cross-dataset needs --data2: the CelebA faces folder (img_align_celeba_halfres)")
    ctx = new_context(scale, data, out, val_data, seeds, device, METHODS, log)
    if name != "appendix-d":  # the other variants fit with the scale's own protocol only
        ctx = replace(ctx, fit_lrs=(scale.fit_lr,))
    runs = {"fig4": run_fig4, "appendix-d": run_appendix_d, "ffn": run_ffn, "reptile": run_reptile,
            "bits16": run_bits16, "cross-dataset": lambda c: run_cross_dataset(c, data2)}
    return runs[name](ctx)


def _cell(value) -> str:
    return f"{value:,.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _run_variant(name: str) -> Callable[[Request], Outcome]:
    def run(request: Request) -> Outcome:
        rows, files = run_variant_experiment(
            name, request.scale, request.data, request.out, val_data=request.val_data, data2=request.data2,
            seeds=request.seeds, device=request.device, log=request.log)
        shown = summary(name, rows)
        table = SummaryTable(name, tuple(shown[0]), [tuple(_cell(v) for v in r.values()) for r in shown])
        return Outcome(rows, files, table)

    return run


for _name, _description in VARIANT_EXPERIMENTS.items():
    _scales = TICKET_SCALES if _name == "winning-ticket" else SCALES
    EXPERIMENTS.add(_name, Experiment(_name, _description, _scales, _run_variant(_name)))


__all__ = ["TICKET_SCALES", "VARIANT_EXPERIMENTS", "TicketScale", "jpeg_at_budget", "jpeg_sweep", "mask_bits",
           "run_variant_experiment", "summary"]
