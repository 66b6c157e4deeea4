"""The codec commands as a user runs them: build from a trained network, compress, decompress, rd."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from metasparse.cli import main

TRAIN = ["--set", "model.width=8", "--set", "model.depth=2", "--set", "data.patch=8", "--set", "meta.batch_size=4",
         "--set", "train.log_every=2", "--set", "train.checkpoint_every=2", "--steps", "2", "--device", "cpu",
         "--no-evaluate"]


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "metasparse.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, check=False, cwd=cwd)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("codec-cli")
    photos = root / "photos"
    photos.mkdir()
    y, x = np.mgrid[0:30, 0:40]
    for i in range(3):
        image = np.stack([128 + 90 * np.sin(x / (4 + i) + c) * np.cos(y / 6) for c in range(3)], -1)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(photos / f"p{i}.png")
    Image.fromarray((y * 8 % 256).astype(np.uint8)).save(photos / "grey.png")
    main(["train", "codec-photos", "--data", str(photos), "--out", str(root / "run"), *TRAIN])
    main(["codec-build", str(root / "run"), "--data", str(photos), "--output", str(root / "codec.safetensors"),
          "--budgets", "4,16", "--patches", "32", "--steps", "2", "--device", "cpu"])
    return root


def test_compress_then_decompress_reports_and_round_trips(workspace, capsys) -> None:
    model = str(workspace / "codec.safetensors")
    images = [workspace / "photos" / "p0.png", workspace / "photos" / "grey.png"]
    main(["compress", *map(str, images), "-o", str(workspace / "z"), "-m", model, "-q", "2"])
    text = capsys.readouterr().out
    assert "bpp" in text and "PSNR" in text
    files = [workspace / "z" / "p0.mspz", workspace / "z" / "grey.mspz"]
    main(["decompress", *map(str, files), "-o", str(workspace / "d"), "-m", model,
          "--original", str(workspace / "photos")])
    assert "PSNR" in capsys.readouterr().out
    assert np.asarray(Image.open(workspace / "d" / "p0.png")).shape == (30, 40, 3)
    assert np.asarray(Image.open(workspace / "d" / "grey.png")).shape == (30, 40)


def test_rd_writes_tables_and_plot(workspace) -> None:
    out = workspace / "rd"
    main(["rd", "--data", str(workspace / "photos"), "-m", str(workspace / "codec.safetensors"), "--codecs", "jpeg",
          "-o", str(out)])
    summary = (out / "rd_summary.csv").read_text()
    assert "metasparse" in summary and "jpeg" in summary
    assert (out / "rd.png").stat().st_size > 1000


@pytest.mark.parametrize("case", ["missing", "corrupt", "exists", "not-a-model", "folder", "empty", "quality"])
def test_bad_input_is_one_line_and_nonzero(workspace, tmp_path, case) -> None:
    model = str(workspace / "codec.safetensors")
    photo = workspace / "photos" / "p1.png"
    if case == "missing":
        args = ["compress", tmp_path / "nothere.png", "-m", model]
    elif case == "corrupt":
        (tmp_path / "bad.mspz").write_bytes(b"MSPZ" + bytes(80))
        args = ["decompress", tmp_path / "bad.mspz", "-m", model, "-o", tmp_path / "o.png"]
    elif case == "exists":
        (tmp_path / "p1.mspz").write_bytes(b"keep me")
        args = ["compress", photo, "-m", model, "-o", tmp_path / "p1.mspz"]
    elif case == "not-a-model":
        args = ["compress", photo, "-m", photo]
    elif case == "folder":
        args = ["compress", tmp_path, "-m", model]
    elif case == "empty":
        (tmp_path / "empty.png").write_bytes(b"")
        args = ["compress", tmp_path / "empty.png", "-m", model]
    else:
        args = ["compress", photo, "-m", model, "-q", "9", "-o", tmp_path / "x.mspz"]
    result = run_cli(*args)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    if case == "exists":
        assert (tmp_path / "p1.mspz").read_bytes() == b"keep me"
