"""What the codec commands write, and what they refuse before doing any work.

Outputs are published atomically and, without --force, only as new files (two writers of one name
never both succeed); impossible output paths, bad references and oversized files are refused with
one line before any fitting, decoding or writing; ``-o -`` is standard output, never a file named -.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

from metasparse.cli import main
from metasparse.codec import model as codec_model
from metasparse.codec.build import build_codec
from metasparse.codec.format.bitstream import pack, unpack
from metasparse.codec.model import ImageCodec
from metasparse.codec.zoo import load_codec
from metasparse.config import ProblemConfig, RunConfig, build_problem
from metasparse.data.images import read_image
from metasparse.errors import BitstreamError
from metasparse.meta.engine import MetaConfig
from metasparse.meta.fit import FitConfig
from metasparse.nn.siren import ModelConfig
from metasparse.utils.fileio import write_atomic

PATCH = 8


def smooth_image(h: int, w: int, channels: int = 3) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    planes = [128 + 100 * np.sin(x / 5 + c) * np.cos(y / 7) for c in range(channels)]
    return np.stack(planes, axis=-1).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny codec model file (untrained network, 8-pixel patches) and a few images."""
    root = tmp_path_factory.mktemp("codec-outputs")
    config = RunConfig(model=ModelConfig(kind="siren", width=8, depth=2, w0=30.0),
                       problem=ProblemConfig(kind="mscn-modulations"),
                       meta=MetaConfig(inner_steps=2, meta_sgd=True, meta_sgd_init=(0.005, 0.1)))
    meta = build_problem(config, None).init_meta(torch.Generator().manual_seed(0))
    patches = torch.randint(0, 256, (48, PATCH, PATCH, 3), generator=torch.Generator().manual_seed(0),
                            dtype=torch.uint8)
    codec = build_codec(config, meta, patches, [4, 16], FitConfig(steps=2, optimizer="inner", batch_size=64),
                        patch_size=PATCH)
    codec.save(root / "codec.safetensors")
    Image.fromarray(smooth_image(30, 40)).save(root / "photo.png")
    Image.fromarray(smooth_image(30, 40, 1)[:, :, 0]).save(root / "grey.png")
    Image.fromarray(smooth_image(8, 8)).save(root / "small.png")
    Image.fromarray(smooth_image(16, 40)).save(root / "other-size.png")
    return root


def cli(*args) -> int:
    """Run the command line in this process; its exit status."""
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def no_fitting(monkeypatch):
    """Fail the test if an image is fitted: what is refused must be refused before that work."""
    def refuse(*args, **kwargs):
        raise AssertionError("fitting started before the command refused its outputs")

    monkeypatch.setattr(ImageCodec, "compress_images", refuse)


# -- the atomic writer -----------------------------------------------------------------------


def test_exclusive_write_never_replaces_and_leaves_nothing_behind(tmp_path) -> None:
    target = tmp_path / "out.bin"
    write_atomic(target, b"first", overwrite=False)
    with pytest.raises(FileExistsError):
        write_atomic(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first" and leftovers(tmp_path) == []
    write_atomic(target, b"third")  # overwrite=True (the default) replaces
    assert target.read_bytes() == b"third"


def test_exclusive_write_without_hard_links_is_still_exclusive(tmp_path, monkeypatch) -> None:
    def no_links(source, target):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "out.bin"
    write_atomic(target, b"first", overwrite=False)
    with pytest.raises(FileExistsError):
        write_atomic(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first" and leftovers(tmp_path) == []


def test_new_files_get_the_umask_permissions_either_way(tmp_path) -> None:
    previous = os.umask(0o027)
    try:
        write_atomic(tmp_path / "a", b"x", overwrite=False)
        write_atomic(tmp_path / "b", b"x")
    finally:
        os.umask(previous)
    for name in ("a", "b"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640


# -- compress: concurrent writers, outputs checked before fitting, standard output -------------


def test_a_file_written_meanwhile_by_another_process_is_kept(workspace, tmp_path, monkeypatch,
                                                              capsys) -> None:
    """Two compress runs to one target without --force: the one that finishes second fails, and the
    other's file is intact (a blind rename would silently replace it)."""
    target = tmp_path / "photo.mspz"
    fit = ImageCodec.compress_images

    def other_process_finishes_first(self, *args, **kwargs):
        results = fit(self, *args, **kwargs)
        target.write_bytes(b"the other process's file")
        return results

    monkeypatch.setattr(ImageCodec, "compress_images", other_process_finishes_first)
    assert cli("compress", workspace / "photo.png", "-o", target, "-m", workspace / "codec.safetensors") == 1
    assert "another process" in one_line_error(capsys)
    assert target.read_bytes() == b"the other process's file" and leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["under-a-file", "a-folder", "unwritable-folder"])
def test_impossible_outputs_are_refused_before_fitting(workspace, tmp_path, monkeypatch, no_fitting, capsys,
                                                       case) -> None:
    if case == "under-a-file":
        (tmp_path / "plain").write_bytes(b"")
        target, expected = tmp_path / "plain" / "sub" / "x.mspz", "is a file, not a folder"
    elif case == "a-folder":  # -o names a folder, in which the output's name is taken by a folder
        (tmp_path / "photo.mspz").mkdir()
        target, expected = f"{tmp_path}/", "photo.mspz is a folder"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        if os.geteuid() == 0:  # root writes anywhere: make the permission check see what a user would
            real_access = os.access
            monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.fspath(p) == os.fspath(locked)
                                else real_access(p, mode, **kw))
        target, expected = locked / "x.mspz", "no permission to write"
    status = cli("compress", workspace / "photo.png", "-o", target, "-m", workspace / "codec.safetensors",
                 "--force")
    assert status == 1
    assert expected in one_line_error(capsys)


def test_compress_to_standard_output_writes_the_file_there(workspace, tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "metasparse.cli", "compress", str(workspace / "photo.png"),
                             "-o", "-", "-m", str(workspace / "codec.safetensors")],
                            capture_output=True, timeout=300, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert b"standard output" in result.stderr
    codec = load_codec(str(workspace / "codec.safetensors"))
    assert codec.decompress(result.stdout).shape == (30, 40, 3)
    assert not (tmp_path / "-").exists() and list(tmp_path.iterdir()) == []


def test_standard_output_takes_one_input_only(workspace, tmp_path, monkeypatch, no_fitting, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli("compress", workspace / "photo.png", workspace / "grey.png", "-o", "-", "-m",
               workspace / "codec.safetensors") != 0
    assert "-o - writes one file" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_skip_existing_names_a_file_that_does_not_verify(workspace, compressed, tmp_path, monkeypatch,
                                                          capsys) -> None:
    whole = (compressed / "photo.mspz").read_bytes()
    (tmp_path / "photo.mspz").write_bytes(whole[: len(whole) // 2])  # what a killed writer might leave
    monkeypatch.setattr(ImageCodec, "compress_images", lambda *a, **k: pytest.fail("fitting started"))
    assert cli("compress", workspace / "photo.png", "-o", tmp_path / "photo.mspz", "-m",
               workspace / "codec.safetensors", "--skip-existing") == 1
    err = one_line_error(capsys)
    assert "exists but does not verify (truncated file" in err and "--force" in err
    assert (tmp_path / "photo.mspz").read_bytes() == whole[: len(whole) // 2]


def test_the_time_printed_per_file_is_that_files(workspace, tmp_path, monkeypatch, capsys) -> None:
    """A 30x40 image (20 patches) and an 8x8 one (1 patch) fitted together: the larger takes most of
    the fitting time, not the same mean as the small one."""
    fit = ImageCodec.compress_images

    def slow_fit(self, *args, **kwargs):
        time.sleep(0.6)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(ImageCodec, "compress_images", slow_fit)
    assert cli("compress", workspace / "photo.png", workspace / "small.png", "-o", tmp_path,
               "-m", workspace / "codec.safetensors") == 0
    lines = capsys.readouterr().out.splitlines()
    seconds = {line.split()[0]: float(line.split()[-2]) for line in lines if "→" in line}
    assert seconds["photo.png"] > 5 * seconds["small.png"]
    assert seconds["photo.png"] + seconds["small.png"] >= 0.6


# -- decompress: references, size limit, standard output ----------------------------------------


@pytest.fixture(scope="module")
def compressed(workspace):
    folder = workspace / "compressed"
    assert cli("compress", workspace / "photo.png", workspace / "grey.png", "-o", folder, "-m",
               workspace / "codec.safetensors") == 0
    return folder


@pytest.mark.parametrize("case", ["size", "channels", "missing"])
def test_a_bad_reference_is_refused_before_anything_is_written(workspace, compressed, tmp_path, capsys,
                                                               case) -> None:
    source = compressed / ("grey.mspz" if case == "channels" else "photo.mspz")
    reference = {"size": workspace / "other-size.png", "channels": workspace / "photo.png",
                 "missing": tmp_path / "nothere.png"}[case]
    if case == "channels":  # same size, three channels where the file decodes to one
        source = compressed / "grey.mspz"
    target = tmp_path / "out.png"
    assert cli("decompress", source, "-o", target, "-m", workspace / "codec.safetensors",
               "--original", reference) == 1
    err = one_line_error(capsys)
    assert {"size": "its size is 40x16, the file decodes to 40x30",
            "channels": "it has 3 channel(s), the file decodes to 1",
            "missing": "no such file"}[case] in err
    if case == "size":
        assert "channel" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_matching_reference_reports_psnr(workspace, compressed, tmp_path, capsys) -> None:
    assert cli("decompress", compressed / "grey.mspz", "-o", tmp_path / "g.png", "-m",
               workspace / "codec.safetensors", "--original", workspace / "grey.png") == 0
    assert "PSNR" in capsys.readouterr().out
    assert np.asarray(Image.open(tmp_path / "g.png")).shape == (30, 40)


def test_max_pixels_refuses_a_larger_image_before_decoding(workspace, compressed, tmp_path, capsys) -> None:
    assert cli("decompress", compressed / "photo.mspz", "-o", tmp_path / "p.png", "-m",
               workspace / "codec.safetensors", "--max-pixels", 1000) == 1
    assert "over --max-pixels 1,000" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []
    assert cli("decompress", compressed / "photo.mspz", "-o", tmp_path / "p.png", "-m",
               workspace / "codec.safetensors", "--max-pixels", 1200) == 0


def test_decompress_to_standard_output_writes_a_png_there(workspace, compressed, tmp_path) -> None:
    command = ["decompress", compressed / "photo.mspz", "-o", "-", "-m", workspace / "codec.safetensors"]
    result = subprocess.run([sys.executable, "-m", "metasparse.cli", *map(str, command)],
                            capture_output=True, timeout=300, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.iterdir()) == []


def test_decompress_refuses_an_existing_output_and_an_unknown_extension_before_decoding(
        workspace, compressed, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(ImageCodec, "decompress", lambda *a, **k: pytest.fail("decoding started"))
    (tmp_path / "taken.png").write_bytes(b"keep")
    assert cli("decompress", compressed / "photo.mspz", "-o", tmp_path / "taken.png", "-m",
               workspace / "codec.safetensors") == 1
    assert "exists" in one_line_error(capsys) and (tmp_path / "taken.png").read_bytes() == b"keep"
    assert cli("decompress", compressed / "photo.mspz", "-o", tmp_path / "x.nosuch", "-m",
               workspace / "codec.safetensors") == 1
    assert "extension" in one_line_error(capsys)


# -- decoding cost bounded by the file ------------------------------------------------------------


def test_decoding_never_holds_a_float_copy_of_the_image(workspace, monkeypatch) -> None:
    """Patches are rendered and rounded chunk by chunk into a uint8 image: the numpy memory at its
    peak is a few times the output, where a float64 image alone would be eight times it."""
    codec = load_codec(str(workspace / "codec.safetensors"))
    image = smooth_image(256, 256)
    data = codec.compress(image, 1).data
    monkeypatch.setattr(codec_model, "RENDER_POINTS", 64 * PATCH * PATCH)  # 64 patches a chunk
    tracemalloc.start()
    try:
        decoded = codec.decompress(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded.shape == image.shape
    assert peak < 3 * image.nbytes, f"peak {peak:,} bytes for a {image.nbytes:,}-byte image"


def test_a_header_announcing_more_patches_than_the_payload_holds_is_refused_unread(workspace) -> None:
    """Also where only the header is read (--skip-existing, and decompress before decoding)."""
    codec = load_codec(str(workspace / "codec.safetensors"))
    header, payload = unpack(codec.compress(smooth_image(8, 8), 1).data)
    import dataclasses

    huge = pack(dataclasses.replace(header, height=4000, width=4000), payload)
    with pytest.raises(BitstreamError, match="cannot hold"):
        codec.read_header(huge, max_pixels=None)


# -- the Python example of the README -------------------------------------------------------------


def test_read_image_takes_a_string_and_a_path_like(workspace) -> None:
    as_text = read_image(str(workspace / "photo.png"))
    assert as_text.shape == (30, 40, 3)
    assert np.array_equal(read_image(os.fspath(workspace / "grey.png")), read_image(workspace / "grey.png"))


# -- messages that name the cause --------------------------------------------------------------


def test_codec_build_says_a_network_has_no_modulations(workspace, tmp_path, capsys) -> None:
    from metasparse.training.model_file import MetaModel

    # Plain MAML on the weights: no modulations at all.
    config = RunConfig(model=ModelConfig(kind="siren", width=8, depth=2, w0=30.0))
    meta = build_problem(config, None).init_meta(torch.Generator().manual_seed(0))
    MetaModel(config, meta).save(tmp_path / "model.safetensors")
    # The default budgets: before, the message blamed them ("budget 32 outside [1, 16] modulations").
    assert cli("codec-build", tmp_path, "--data", workspace / "photo.png", "-o",
               tmp_path / "codec.safetensors", "--patches", 4, "--device", "cpu") == 1
    err = one_line_error(capsys)
    assert "weights network, without the gated modulations" in err and "mscn-modulations" in err
    assert not (tmp_path / "codec.safetensors").exists()


def test_rd_refuses_an_unknown_codec_before_any_work(workspace, tmp_path, no_fitting, capsys) -> None:
    assert cli("rd", "--data", workspace / "photo.png", "-m", workspace / "codec.safetensors",
               "--codecs", "jpeg,nosuch", "-o", tmp_path / "rd") == 1
    err = one_line_error(capsys)
    assert "unknown codec(s) 'nosuch'" in err and "jpeg, jpeg2000, webp" in err
    assert not (tmp_path / "rd").exists()


def test_a_file_made_with_an_earlier_bundled_model_still_decodes_with_the_default(tmp_path, capsys) -> None:
    import json
    from pathlib import Path

    from metasparse.codec.zoo import BUNDLED, bundled_model_path

    data = Path(__file__).parents[2] / "unit" / "codec" / "data"
    expected = json.loads((data / "bundled-model-files.json").read_text())["files"]
    earlier = [name for name, entry in expected.items() if entry["model"] != "default"]
    assert earlier and "default-1" in BUNDLED
    source = data / earlier[0]
    assert cli("decompress", source, "-o", tmp_path / "old.png") == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "old.png")),
                          load_codec(expected[earlier[0]]["model"]).decompress(source.read_bytes()))
    capsys.readouterr()
    # A model file named by the user is used as it is: a file of another model is refused.
    assert cli("decompress", source, "-o", tmp_path / "other.png", "-m", bundled_model_path("default")) == 1
    assert "model" in one_line_error(capsys) and not (tmp_path / "other.png").exists()
