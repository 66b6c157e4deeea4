"""The Meta-SparseINR variant experiments end to end at a tiny scale, on images made here."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from metasparse.data.images import save_image
from metasparse.errors import ConfigError
from metasparse.experiments import runner, variants
from metasparse.experiments.runner import Scale, run_experiment
from metasparse.experiments.variants import TicketScale, run_variant_experiment

TINY = Scale(name="tiny", size=8, short=8, width=8, depth=2, w0=30.0, dense_steps=3, rounds=2, steps_per_round=2,
             fit_steps=4, fit_lr=1e-3, seeds=1, outer_lr=1e-4, val_limit=3, fit_batch=4, checkpoint_every=100)
TINY_TICKET = TicketScale("tiny", size=8, width=8, depth=2, steps=3, lr=1e-3, rounds=2, images=2)
SIREN_WEIGHTS = [104, 84, 68]  # 2x8 + 8x8 + 8x3, then 20 % of the survivors per round
FFN_WEIGHTS = [88, 71, 57]  # the fixed Fourier layer is neither counted nor pruned


def smooth_images(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    up = torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)
    return (up.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def write_folder(folder, images, names) -> str:
    folder.mkdir(parents=True)
    for name, a in zip(names, images):
        save_image(folder / name, a)
    return str(folder)


@pytest.fixture
def imagenette(tmp_path):
    imgs = smooth_images(9, 10, 12)
    train = write_folder(tmp_path / "imagenette" / "train", imgs[:6], [f"{i}.png" for i in range(6)])
    write_folder(tmp_path / "imagenette" / "val", imgs[6:], [f"{i}.png" for i in range(3)])
    return train


@pytest.fixture
def celeba(tmp_path):
    # file numbers put faces in the fixed splits: 33-8000 train, 8001-9000 test
    numbers = [40, 41, 42, 43, 8001, 8002, 8003]
    return write_folder(tmp_path / "celeba", smooth_images(7, 11, 9, seed=1), [f"{n:06d}.png" for n in numbers])


@pytest.fixture(autouse=True)
def tiny_scales(monkeypatch):
    monkeypatch.setitem(runner.SCALES, "tiny", TINY)
    monkeypatch.setitem(variants.TICKET_SCALES, "tiny", TINY_TICKET)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_fig4_reuses_fig2_runs(tmp_path, imagenette):
    out = tmp_path / "out"
    run_experiment("fig2", TINY, imagenette, out, methods=("Meta-SparseINR", "Dense-Narrow"))
    checkpoints = sorted((out / "seed_0").glob("*/checkpoint.safetensors"))
    before = [p.stat().st_mtime_ns for p in checkpoints]
    rows, files = run_variant_experiment("fig4", "tiny", imagenette, out)
    assert [p.stat().st_mtime_ns for p in checkpoints] == before  # nothing retrained
    assert {f.name for f in files} == {"fig4.csv", "fig4.json", "fig4.png"}
    assert len(rows) == 2 * 3 and {r["method"] for r in rows} == {"Dense-Narrow", "Meta-SparseINR"}
    sparse = [r for r in rows if r["method"] == "Meta-SparseINR"]
    assert all(r["nonzero_weights"] == SIREN_WEIGHTS[2] and r["round"] == 2 for r in sparse)
    narrow = [r for r in rows if r["method"] == "Dense-Narrow"]
    assert all(r["width"] < 8 for r in narrow)
    assert len(read_csv(out / "fig4.csv")) == 6


def test_appendix_d_compares_train_and_test_images(tmp_path, imagenette):
    out = tmp_path / "out"
    rows, files = run_variant_experiment("appendix-d", "tiny", imagenette, out)
    assert {(r["method"], r["round"], r["fit_lr"]) for r in rows} == {
        (m, k, lr) for m in ("Meta-SparseINR", "Dense-Narrow") for k in range(3) for lr in (1e-3, 1e-4)}
    # test points share fig2's cache; training-image points have their own, and the rows read them
    test_point = json.loads((out / "seed_0" / "points" / "Meta-SparseINR_r02.json").read_text())
    train_point = json.loads((out / "seed_0" / "points-train" / "Meta-SparseINR_r02.json").read_text())
    row = next(r for r in rows if r["method"] == "Meta-SparseINR" and r["round"] == 2)
    assert row["psnr_test"] == pytest.approx(test_point["psnr_mean"], abs=1e-3)
    assert row["psnr_train"] == pytest.approx(train_point["psnr_mean"], abs=1e-3)
    assert train_point["psnr_mean"] != test_point["psnr_mean"]  # two different sets of images
    # the official code's protocol (lr 1e-4) beside the scale's own (lr 1e-3), each in its own file
    slow = json.loads((out / "seed_0" / "points-train" / "Meta-SparseINR_r02_lr1e-04.json").read_text())
    row = next(r for r in rows if r["method"] == "Meta-SparseINR" and r["round"] == 2 and r["fit_lr"] == 1e-4)
    assert row["psnr_train"] == pytest.approx(slow["psnr_mean"], abs=1e-3) and slow["fit_lr"] == 1e-4
    info = json.loads((out / "appendix_d.json").read_text())
    assert info["train_images"]["limit"] == 3 and info["train_images"]["path"] == imagenette
    assert all(f.exists() for f in files)


def test_ffn_prunes_everything_but_the_fourier_layer(tmp_path, imagenette):
    out = tmp_path / "out"
    rows, _ = run_variant_experiment("ffn", "tiny", imagenette, out)
    by = {(r["method"], r["round"]): r for r in rows}
    assert {m for m, _ in by} == {"Meta-SparseINR", "Random Pruning", "Dense-Narrow", "Scratch"}
    for m in ("Meta-SparseINR", "Random Pruning"):
        assert [by[(m, k)]["nonzero_weights"] for k in range(3)] == FFN_WEIGHTS
    assert by[("Dense-Narrow", 2)]["width"] % 2 == 0 and by[("Dense-Narrow", 2)]["width"] < 8
    config = json.loads((out / "ffn" / "seed_0" / "meta-sparse-inr" / "config.json").read_text())
    assert config["model"]["kind"] == "ffn" and config["model"]["fourier_sigma"] == 20.0
    model = runner.MetaModel.load(out / "ffn" / "seed_0" / "meta-sparse-inr" / "round_02.safetensors")
    assert "layers.0.weight" not in model.masks and "layers.0.weight" not in model.meta["theta"]
    assert (out / "ffn.png").exists() and not (out / "seed_0").exists()  # kept apart from fig2's runs


def test_reptile_meta_learns_with_reptile_and_fits_longer(tmp_path, imagenette):
    out = tmp_path / "out"
    rows, _ = run_variant_experiment("reptile", "tiny", imagenette, out)
    assert {r["method"] for r in rows} == {"Meta-SparseINR", "Random Pruning", "Dense-Narrow"}
    config = json.loads((out / "reptile" / "seed_0" / "meta-sparse-inr" / "config.json").read_text())
    assert config["meta"]["algorithm"] == "reptile" and config["fit"]["steps"] == 5 * TINY.fit_steps
    point = json.loads((out / "reptile" / "seed_0" / "points" / "Meta-SparseINR_r01.json").read_text())
    assert len(point["trajectory"]) == 5 * TINY.fit_steps + 1
    row = next(r for r in rows if r["method"] == "Meta-SparseINR" and r["round"] == 1)
    assert row["psnr_after_4"] == pytest.approx(point["trajectory"][4], abs=1e-3)  # the usual budget, same fit
    assert row["psnr_mean"] == pytest.approx(point["psnr_mean"], abs=1e-3)


def test_bits16_counts_bits_and_matches_jpeg(tmp_path, imagenette):
    out = tmp_path / "out"
    rows, files = run_variant_experiment("bits16", "tiny", imagenette, out)
    assert [r["round"] for r in rows] == [0, 1, 2]
    for r, nz in zip(rows, SIREN_WEIGHTS):
        assert r["nonzero_weights"] == nz
        assert r["biases"] == 8 + 8 + 3
        assert abs(r["psnr16"] - r["psnr32"]) < 0.5  # float16 weights cost little
    # the dense network needs no mask: 16 bits for each of its 104 weights and 19 biases over 8x8 pixels
    assert rows[0]["mask_bits"] == 0 and rows[0]["bpp16"] == 30.75 and rows[0]["bpp32"] == 61.5
    info = json.loads((out / "bits16.json").read_text())
    assert all(p["pixels"] == 64 and p["total_weights"] == 104 for p in info["points"])
    assert [p["mask_bits"] for p in info["points"]] == [variants.mask_bits(104, nz) for nz in SIREN_WEIGHTS]
    assert any(p["psnr16"] != p["psnr32"] for p in info["points"])  # the float16 rounding is visible
    assert [c["quality"] for c in info["jpeg_curve"]] == 2 * list(range(1, 101))
    assert all(f.exists() for f in files)


def test_mask_bits_and_jpeg_budget():
    assert variants.mask_bits(10, 5) == 8  # log2 C(10, 5) = log2 252
    assert variants.mask_bits(10, 10) == 0
    for n, k in ((104, 84), (104, 68), (50, 1), (20, 19), (64, 32), (3, 2)):
        assert variants.mask_bits(n, k) == (math.comb(n, k) - 1).bit_length()  # ceil(log2 C(n, k))
    sweep = {"quality": np.array([10, 50, 90, 90]), "subsampling": np.array(["4:2:0"] * 3 + ["4:4:4"]),
             "bpp": np.array([[1.0, 2.0, 4.0, 6.0], [1.5, 3.0, 5.0, 7.0]]),
             "psnr": np.array([[25.0, 30.0, 35.0, 40.0], [24.0, 29.0, 34.0, 39.0]])}
    m = variants.jpeg_at_budget(sweep, 3.0)
    assert m["jpeg_psnr"] == pytest.approx((30 + 29) / 2) and m["jpeg_images_over_budget"] == 0
    assert m["jpeg_bpp"] == pytest.approx((2.0 + 3.0) / 2) and m["jpeg_quality_mean"] == 50
    assert m["jpeg_images_below_budget_at_max"] == 0
    m = variants.jpeg_at_budget(sweep, 1.2)  # the second image does not fit even at quality 10
    assert m["jpeg_images_over_budget"] == 1 and m["jpeg_quality_mean"] == 10
    m = variants.jpeg_at_budget(sweep, 6.5)  # the best file within the budget, whatever its setting
    assert m["jpeg_psnr"] == pytest.approx((40 + 34) / 2) and m["jpeg_444_share"] == 0.5
    assert variants.jpeg_at_budget(sweep, 9.0)["jpeg_images_below_budget_at_max"] == 2
    assert variants.jpeg_bpp_for_psnr(sweep, np.array([29.0, 40.0])) == (2.0, 1)


def test_cross_dataset_both_directions(tmp_path, imagenette, celeba):
    out = tmp_path / "out"
    with pytest.raises(ConfigError):
        run_variant_experiment("cross-dataset", "tiny", imagenette, out)
    rows, files = run_variant_experiment("cross-dataset", "tiny", imagenette, out, data2=celeba)
    combos = {(r["train_set"], r["test_set"]) for r in rows}
    assert combos == {(a, b) for a in ("Imagenette", "CelebA") for b in ("Imagenette", "CelebA")}
    assert len(rows) == 4 * 3 * 3
    config = json.loads((out / "cross-dataset-celeba" / "seed_0" / "meta-sparse-inr" / "config.json").read_text())
    assert config["data"]["split"] == "celeba_train" and config["data"]["path"] == celeba
    points = json.loads((out / "seed_0" / "points-celeba" / "Meta-SparseINR_r02.json").read_text())
    assert points["nonzero_weights"] == SIREN_WEIGHTS[2]
    assert all(f.exists() for f in files)


def test_winning_ticket_imp_vs_dense_narrow(tmp_path):
    photos = write_folder(tmp_path / "photos", smooth_images(3, 12, 14, seed=2), ["a.png", "b.png", "c.png"])
    out = tmp_path / "out"
    rows, files = run_variant_experiment("winning-ticket", "tiny", photos, out)
    assert len(rows) == 2 * 2 * 3
    by = {(r["arch"], r["method"], r["round"]): r for r in rows}
    for arch, weights in (("SIREN", SIREN_WEIGHTS), ("FFN", FFN_WEIGHTS)):
        assert [by[(arch, "IMP (winning ticket)", k)]["nonzero_weights"] for k in range(3)] == weights
        assert by[(arch, "Dense-Narrow", 0)]["psnr_peak_mean"] == by[(arch, "IMP (winning ticket)", 0)]["psnr_peak_mean"]
        assert by[(arch, "Dense-Narrow", 2)]["width"] < 8 and by[(arch, "Dense-Narrow", 2)]["images"] == 2
    cached = sorted((out / "winning-ticket" / "points").glob("*"))
    widths = {arch: set(variants.baselines.narrow_widths(variants._ticket_model(TINY_TICKET, arch), 2)[1:])
              for arch in variants.TICKET_ARCHS}
    assert len(cached) == 2 * 3 + sum(map(len, widths.values()))  # per arch: a file per IMP round, per width
    before = [p.stat().st_mtime_ns for p in cached]
    rows2, _ = run_variant_experiment("winning-ticket", "tiny", photos, out)
    assert rows2 == rows and [p.stat().st_mtime_ns for p in cached] == before
    assert all(f.exists() for f in files)


def test_cli_lists_and_runs_the_variants(tmp_path, imagenette):
    from metasparse.cli import app

    cli = CliRunner()
    res = cli.invoke(app, ["experiment", "--list"])
    assert res.exit_code == 0
    for name in variants.VARIANT_EXPERIMENTS:
        assert name in res.output
    res = cli.invoke(app, ["experiment", "cross-dataset", "--scale", "tiny", "--data", imagenette,
                           "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert res.exit_code != 0 and isinstance(res.exception, ConfigError) and "--data2" in str(res.exception)
    res = cli.invoke(app, ["experiment", "fig4", "--scale", "tiny", "--data", imagenette,
                           "--out", str(tmp_path / "o"), "--device", "cpu", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "fig4.png").exists()
