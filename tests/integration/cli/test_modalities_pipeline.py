"""Every modality through the unchanged pipeline: `metasparse train` (a few steps) → `evaluate`."""

import csv
import json

import numpy as np
import pytest

from helpers import write_grids, write_meshes
from metasparse.cli import main
from metasparse.presets import get_preset

TINY = ["--set", "model.width=16", "--set", "model.depth=2", "--set", "fit.steps=3", "--set", "train.log_every=2",
        "--steps", "3", "--device", "cpu"]


def run(tmp_path, preset, data, train_opts, test_opts, metrics, picture_suffix=".png"):
    run_dir = tmp_path / "run"
    main(["train", preset, "--data", str(data), "--val-data", str(data), "--out", str(run_dir), *TINY,
          "--set", f"data.transform={train_opts}", "--set", f"val_data.transform={test_opts}"])
    report = json.loads((run_dir / "eval" / "results.json").read_text())
    assert set(metrics) == set(report["metrics"]), report["metrics"]
    assert len(report["psnr_trajectory_mean"]) == 4
    picture = tmp_path / f"pic{picture_suffix}"
    main(["evaluate", str(run_dir / "model.safetensors"), "--data", str(data), "--steps", "2", "--out",
          str(tmp_path / "ev"), "--grid", str(picture), "--transform", test_opts])
    rows = list(csv.DictReader((tmp_path / "ev" / "per_signal.csv").open()))
    assert rows and set(metrics) <= set(rows[0])
    assert picture.exists() and picture.stat().st_size > 1000
    return report, rows


def test_voxels_pipeline(tmp_path, capsys):
    data = write_meshes(tmp_path / "meshes")
    _, rows = run(tmp_path, "voxels-meshes", data, "size=8,poses=2", "size=8,poses=1", {"accuracy", "iou"})
    assert all(0 <= float(r["accuracy"]) <= 1 for r in rows)
    assert {r["signal"].split("/")[0] for r in rows} <= {"cube", "tetra", "prism"}
    assert "accuracy" in capsys.readouterr().out
    assert list((tmp_path / "pic_meshes").glob("*_original.obj"))


def test_sdf3d_pipeline(tmp_path):
    data = write_meshes(tmp_path / "meshes")
    report, _ = run(tmp_path, "sdf3d-meshes", data, "size=8,poses=2,samples=2000", "size=8,poses=1,samples=2000",
                    {"chamfer", "surface_found", "iou"})
    assert report["metrics"]["surface_found"] is not None


def test_sphere_pipeline(tmp_path):
    data = write_grids(tmp_path / "era5")
    _, rows = run(tmp_path, "sphere-era5", data, "rolls=2", "rolls=1", set())
    assert [r["signal"] for r in rows] == ["era5_t2m_normalized_0002"]


def test_sdf2d_pipeline(tmp_path):
    report, _ = run(tmp_path, "sdf2d-shapes", "synthetic", "size=12,count=6", "size=12,count=3", {"iou"})
    assert report["signals"] == 3


def test_modality_errors_are_one_line(tmp_path, capsys):
    data = write_meshes(tmp_path / "meshes", names=("cube",))
    (data / "broken.obj").write_text("v 0 0 0\nv 1 0 nan_or_garbage\n")
    with pytest.raises(SystemExit) as e:
        main(["train", "voxels-meshes", "--data", str(data), "--out", str(tmp_path / "r"), "--set", "data.split=null",
              *TINY])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "broken.obj: line 2: bad vertex" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["train", "voxels-meshes", "--data", str(data), "--set", "data.transform=grid=8", *TINY])
    assert "bad voxels option 'grid=8'" in capsys.readouterr().err


def test_presets_fit_their_modalities():
    for name, in_dim in (("voxels-meshes", 3), ("sdf3d-meshes", 3), ("sphere-era5", 3), ("sdf2d-shapes", 2)):
        p = get_preset(name)
        assert (p.model.in_dim, p.model.out_dim) == (in_dim, 1)
        assert p.data.modality == p.val_data.modality and p.data.split == "train" and p.val_data.split == "test"


def test_fig2_runs_on_sdf2d(tmp_path):
    from metasparse.experiments.runner import Scale, run_experiment

    tiny = Scale(name="tiny", size=8, short=8, width=8, depth=2, w0=30.0, dense_steps=2, rounds=1, steps_per_round=1,
                 fit_steps=2, fit_lr=1e-3, seeds=1, train_limit=6, val_limit=2, checkpoint_every=1)
    rows, _ = run_experiment("fig2", tiny, "sdf2d:synthetic", tmp_path / "fig2",
                                 methods=("Meta-SparseINR", "Dense-Narrow"))
    # Two methods x (dense + one round) x two test-time protocols.
    assert {r["method"] for r in rows} == {"Meta-SparseINR", "Dense-Narrow"} and len(rows) == 8
    assert {r["fit_lr"] for r in rows} == {1e-3, 1e-4}
    assert all(np.isfinite(r["psnr_mean"]) for r in rows)
    assert (tmp_path / "fig2" / "fig2.png").exists()
