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


def test_info_shows_the_header_without_decoding(workspace, capsys) -> None:
    model = str(workspace / "codec.safetensors")
    main(["compress", str(workspace / "photos" / "p0.png"), "-o", str(workspace / "info.mspz"), "-m", model, "-q", "2"])
    capsys.readouterr()
    main(["info", str(workspace / "info.mspz"), "-m", model])
    text = capsys.readouterr().out
    assert "format 2, 40x30" in text and "quality 2" in text and "25 container" in text
    assert text.rstrip().endswith("made with this model") and "NOT" not in text


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


def test_compress_shards_files_across_torchrun_ranks(workspace, tmp_path, monkeypatch, capsys) -> None:
    """Under torchrun (RANK / WORLD_SIZE set) each rank writes its own share, and together all files."""
    model = str(workspace / "codec.safetensors")
    photos = sorted((workspace / "photos").glob("p*.png"))
    written = {}
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        before = set((tmp_path / "z").glob("*.mspz")) if (tmp_path / "z").exists() else set()
        main(["compress", *map(str, photos), "-o", str(tmp_path / "z"), "-m", model, "-q", "1"])
        written[rank] = {p.name for p in set((tmp_path / "z").glob("*.mspz")) - before}
        assert f"[rank {rank}/2]" in capsys.readouterr().out
    assert written[0] == {"p0.mspz", "p2.mspz"} and written[1] == {"p1.mspz"}


def test_rerun_with_skip_existing_finishes_an_interrupted_batch(workspace, tmp_path, capsys) -> None:
    model = str(workspace / "codec.safetensors")
    photos = sorted((workspace / "photos").glob("p*.png"))
    out = tmp_path / "z"
    main(["compress", str(photos[0]), "-o", str(out / "p0.mspz"), "-m", model, "-q", "1"])
    (out / "p1.mspz").write_bytes(b"MSPZ half a file")  # what a killed writer must never leave, but might find
    kept = (out / "p0.mspz").read_bytes()
    # --max-patches 1: every image is its own chunk, as in a long run that is written file by file.
    main(["compress", *map(str, photos), "-o", str(out), "-m", model, "-q", "1", "--skip-existing", "--force",
          "--max-patches", "1"])
    text = capsys.readouterr().out
    assert "skip" in text and "p0.mspz" in text
    assert (out / "p0.mspz").read_bytes() == kept
    codec_model = __import__("metasparse.codec.zoo", fromlist=["load_codec"]).load_codec(model)
    for name in ("p1", "p2"):
        assert codec_model.decompress((out / f"{name}.mspz").read_bytes()).shape == (30, 40, 3)


def test_an_output_ending_with_a_separator_is_a_folder_even_for_one_input(workspace, tmp_path) -> None:
    main(["compress", str(workspace / "photos" / "p0.png"), "-o", f"{tmp_path / 'new'}/", "-m",
          str(workspace / "codec.safetensors"), "-q", "1"])
    assert (tmp_path / "new" / "p0.mspz").is_file()
