"""The MSCN experiments end to end on a tiny fake CelebA folder (file numbers pick the splits)."""

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from metasparse.experiments import mscn


@pytest.fixture
def faces(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for number in [40, 41, 42, 43, 8001, 8002]:
        Image.fromarray(rng.integers(0, 255, (109, 89, 3), dtype=np.uint8)).save(folder / f"{number:06d}.png")
    return folder


@pytest.fixture
def tiny_scale(monkeypatch):
    scale = dataclasses.replace(
        mscn.MSCN_SCALES["cpu"], name="tiny", size=8, width=8, depth=2, budgets=(2, 4), modulation_steps=2,
        modulation_batch=2, sparse_fractions=(1, 2), dense_steps=2, steps_per_round=1, fit_steps=3,
        train_limit=None, test_limit=None,
    )
    monkeypatch.setitem(mscn.MSCN_SCALES, "tiny", scale)
    return scale


def test_mscn_functa_writes_results_and_pattern_analysis(faces, tiny_scale, tmp_path):
    files = mscn.run_mscn_experiment("mscn-functa", "tiny", str(faces), tmp_path / "out", hq_data=str(faces))
    report = json.loads((tmp_path / "out" / "mscn_functa.json").read_text())
    methods = {(r["method"], r["cost"], r["test_set"]) for r in report["results"]}
    assert methods == {(m, b, t) for m in ("MSCN", "Functa") for b in (2, 4) for t in ("celeba-test", "celeba-hq")}
    per_layer = report["patterns"]["kept_per_layer"]
    assert {int(b): sum(v) for b, v in per_layer.items()} == {2: 2, 4: 4}
    assert any(str(f).endswith("_patterns.png") for f in files)


def test_mscn_sparse_compares_at_equal_cost(faces, tiny_scale, tmp_path):
    files = mscn.run_mscn_experiment("mscn-sparse", "tiny", str(faces), tmp_path / "out")
    assert any(str(f).endswith("mscn_sparse_faces.png") for f in files)
    rows = json.loads((tmp_path / "out" / "mscn_sparse.json").read_text())["results"]
    by_cost: dict = {}
    for r in rows:
        by_cost.setdefault((r["method"], r["fit_lr"]), []).append(r["cost"])
    # every model fitted under both of Meta-SparseINR's test-time protocols
    assert set(by_cost) == {(m, lr) for m in ("Meta-SparseINR", "MSCN (MetaSGD)", "MSCN (fixed lr)",
                                              "MSCN fully sparse") for lr in (1e-3, 1e-4)}
    assert {r["protocol"] for r in rows} == {"paper appendix", "official code"}
    for (method, lr), costs in by_cost.items():
        assert costs == by_cost[("Meta-SparseINR", lr)], method  # the budget makes the costs exactly equal
    psnr = {(r["method"], r["cost"], r["fit_lr"]): r["psnr_mean"] for r in rows}
    assert any(psnr[(m, c, 1e-3)] != psnr[(m, c, 1e-4)] for m, c, _ in psnr)


def test_unknown_names_are_clear_errors(faces, tmp_path):
    from metasparse.errors import ConfigError

    with pytest.raises(ConfigError):
        mscn.run_mscn_experiment("nope", "cpu", str(faces), tmp_path)
    with pytest.raises(ConfigError):
        mscn.run_mscn_experiment("mscn-functa", "huge", str(faces), tmp_path)


def test_mscn_ema_ablation_reuses_the_modulation_models(faces, tiny_scale, tmp_path):
    out = tmp_path / "out"
    files = mscn.run_mscn_experiment("mscn-functa", "tiny", str(faces), out)
    assert (out / "mscn_functa_faces.png").stat().st_size > 1000 and out / "mscn_functa_faces.png" in files
    trained = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("model.safetensors")}
    mscn.run_mscn_experiment("mscn-ema", "tiny", str(faces), out)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("model.safetensors")} == trained
    rows = json.loads((out / "mscn_ema.json").read_text())["results"]
    methods = {r["method"] for r in rows}
    assert methods == {f"{k} steps, " + ("last iterate" if d is None else f"EMA {d:g}")
                       for k in mscn.EMA_STEPS for d in mscn.EMA_DECAYS}
    assert {r["cost"] for r in rows} == set(tiny_scale.budgets)
    assert {r["fit_lr"] for r in rows} == {None} and {r["protocol"] for r in rows} == {"inner loop"}
    assert {r["steps"] for r in rows} == set(mscn.EMA_STEPS)
    # Different read-outs of the same fit give different reconstructions.
    assert len({round(r["psnr_mean"], 6) for r in rows if r["cost"] == 4}) > 1
