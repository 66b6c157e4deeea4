import csv
import json
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from metasparse.data.images import save_image
from metasparse.experiments import runner
from metasparse.experiments.runner import METHODS, Scale, run_experiment


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    up = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (up.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()

TINY = Scale(name="tiny", size=8, short=8, width=8, depth=2, w0=30.0, dense_steps=3, rounds=2, steps_per_round=2,
             fit_steps=4, fit_lr=1e-3, seeds=2, outer_lr=1e-4, val_limit=3, fit_batch=4, checkpoint_every=100)


@pytest.fixture
def folders(tmp_path):
    imgs = smooth_images(9, 10)
    train, val = tmp_path / "data" / "train", tmp_path / "data" / "val"
    for folder, part in ((train, imgs[:6]), (val, imgs[6:])):
        folder.mkdir(parents=True)
        for i, a in enumerate(part):
            save_image(folder / f"{i}.png", a.numpy())
    return train, val


def test_fig2_and_fig3_end_to_end(tmp_path, folders):
    train, _ = folders
    out = tmp_path / "out"
    rows, files = run_experiment("fig2", TINY, str(train), out, device="cpu")
    assert {f.name for f in files} == {"fig2.csv", "fig2.json", "fig2.png"}
    assert all(f.exists() and f.stat().st_size > 0 for f in files)
    assert {r["method"] for r in rows} == set(METHODS)
    # every model fitted under both test-time protocols: Adam lr 1e-3 (paper appendix), 1e-4 (official code)
    assert {(r["fit_lr"], r["protocol"]) for r in rows} == {(1e-3, "paper appendix"), (1e-4, "official code")}
    assert len(rows) == len(METHODS) * 3 * 2 and all(r["seeds"] == 2 for r in rows)
    by = {(r["method"], r["round"]): r for r in rows if r["fit_lr"] == 1e-3}
    slow = {(r["method"], r["round"]): r for r in rows if r["fit_lr"] == 1e-4}
    assert by.keys() == slow.keys()
    assert all(by[key]["nonzero_weights"] == slow[key]["nonzero_weights"] for key in by)
    assert any(by[key]["psnr_mean"] != slow[key]["psnr_mean"] for key in by)
    assert all(r["psnr_std_signals"] > 0 for r in rows)
    total = 2 * 8 + 8 * 8 + 8 * 3
    for m in ("Meta-SparseINR", "Random Pruning", "MAML+OneShot", "MAML+IMP"):
        assert [by[(m, k)]["nonzero_weights"] for k in range(3)] == [total, total - 20, total - 20 - 16]
    assert by[("Dense-Narrow", 0)]["nonzero_weights"] == total
    with open(out / "fig2.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    data = json.loads((out / "fig2.json").read_text())
    assert data["scale"]["name"] == "tiny" and len(data["points"]) == 2 * len(rows)
    # a re-run resumes: every point is cached and nothing is retrained
    mtime = (out / "seed_0" / "meta-sparse-inr" / "checkpoint.safetensors").stat().st_mtime_ns
    rows2, _ = run_experiment("fig2", TINY, str(train), out, device="cpu")
    assert rows2 == rows
    assert (out / "seed_0" / "meta-sparse-inr" / "checkpoint.safetensors").stat().st_mtime_ns == mtime
    _, files3 = run_experiment("fig3", TINY, str(train), out, device="cpu")
    assert {f.name for f in files3} == {"fig3.csv", "fig3.json", "fig3.png"}
    with open(out / "fig3.csv") as f:
        traj = list(csv.DictReader(f))
    assert len(traj) == 2 * len(METHODS) * (TINY.fit_steps + 1)
    assert runner.highest_sparsity_summary(rows)[("Meta-SparseINR", 1e-4)]["round"] == 2


def test_a_run_cached_with_one_protocol_gets_the_other_on_resume(tmp_path, folders):
    train, _ = folders
    out = tmp_path / "out"
    one = replace(TINY, seeds=1, name="one")
    run_experiment("fig2", one, str(train), out, device="cpu", methods=("Meta-SparseINR",))
    points = out / "seed_0" / "points"
    old = points / "Meta-SparseINR_r01.json"
    assert old.exists() and (points / "Meta-SparseINR_r01_lr1e-04.json").exists()
    # a point cached before the protocols existed: no fit_lr, and no second file
    data = json.loads(old.read_text())
    del data["fit_lr"]
    old.write_text(json.dumps(data))
    for f in points.glob("*_lr1e-04.json"):
        f.unlink()
    rows, _ = run_experiment("fig2", one, str(train), out, device="cpu", methods=("Meta-SparseINR",))
    assert len(rows) == 2 * 3 and {r["fit_lr"] for r in rows} == {1e-3, 1e-4}
    assert (points / "Meta-SparseINR_r01_lr1e-04.json").exists()
    assert next(r for r in rows if r["round"] == 1 and r["fit_lr"] == 1e-3)["psnr_mean"] == round(data["psnr_mean"], 3)


def test_cli_list_and_errors(tmp_path, folders, monkeypatch):
    from metasparse.cli import app

    cli = CliRunner()
    res = cli.invoke(app, ["experiment", "--list"])
    assert res.exit_code == 0 and "fig2" in res.output and "paper" in res.output
    res = cli.invoke(app, ["experiment", "nope", "--data", str(folders[0]), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0
    monkeypatch.setitem(runner.SCALES, "tiny", TINY)
    res = cli.invoke(app, ["experiment", "fig2", "--scale", "tiny", "--seeds", "1", "--data", str(folders[0]),
                           "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "fig2.png").exists()


def test_scales_match_the_paper():
    p = runner.SCALES["paper"]
    assert (p.dense_steps, p.rounds, p.steps_per_round, p.seeds) == (150_000, 15, 30_000, 3)
    cfg = p.run_config("imagenette/train", 0)
    assert cfg.model.width == 256 and cfg.model.w0 == 200.0 and cfg.meta.outer_lr == 1e-5


def test_the_cpu_long_scale_is_closer_to_the_paper_and_starts_a_new_adam_for_pruning():
    s = runner.SCALES["cpu-long"]
    assert (s.size, s.width, s.depth, s.w0, s.seeds, s.rounds) == (64, 128, 4, 200.0, 3, 15)
    assert s.val_limit >= 100 and s.train_limit is None and s.val_split is None
    cfg = s.run_config("imagenette/train", 1)
    assert cfg.prune.fresh_optimizer and not runner.SCALES["cpu-deep"].run_config("x", 0).prune.fresh_optimizer
    assert s.fit_lrs() == (1e-3, 1e-4) and cfg.fit.lr == 1e-4
