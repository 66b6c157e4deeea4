"""The codec beyond images: voxels and data on the sphere through `train` → `codec-build` → `compress`
→ `decompress`, with the same container and the same checks as images."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import write_grids, write_meshes
from metasparse.cli import main
from metasparse.codec.format.bitstream import unpack
from metasparse.codec.model import ImageCodec, SignalCodec
from metasparse.codec.zoo import load_codec
from metasparse.config import DataConfig
from metasparse.errors import BitstreamError, DataError, ModelError
from metasparse.modalities.loading import load_signal_set

TINY = ["--set", "problem.kind=mscn-modulations", "--set", "model.width=8", "--set", "model.depth=2",
        "--set", "meta.meta_sgd=true", "--set", "meta.inner_steps=2", "--set", "train.log_every=2",
        "--steps", "2", "--device", "cpu", "--no-evaluate"]


def build(tmp_path, preset, data, transform, split):
    run = tmp_path / f"{preset}-run"
    main(["train", preset, "--data", str(data), "--out", str(run), *TINY, "--set", f"data.transform={transform}",
          "--set", f"data.split={split}"])
    model = tmp_path / f"{preset}.safetensors"
    main(["codec-build", str(run), "--data", str(data), "--split", split, "-o", str(model), "--budgets", "2,8",
          "--steps", "2", "--device", "cpu"])
    return model


@pytest.fixture(scope="module")
def voxel_codec(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("signal-codec")
    meshes = write_meshes(root / "meshes")
    return root, meshes, build(root, "voxels-meshes", meshes, "size=8,poses=2", "all")


def test_voxels_compress_to_files_and_decode_to_grids_and_meshes(voxel_codec, capsys):
    root, meshes, model = voxel_codec
    codec = load_codec(str(model))
    assert isinstance(codec, SignalCodec) and codec.grid_shape == (8, 8, 8) and codec.modality == "voxels"
    out = root / "z"
    main(["compress", str(meshes / "cube.obj"), str(meshes / "tetra.obj"), "-o", str(out), "-m", str(model),
          "-q", "2"])
    text = capsys.readouterr().out
    assert "bits/value" in text and "PSNR" in text
    files = sorted(out.glob("*.mspz"))
    assert [f.name for f in files] == ["cube.mspz", "tetra.mspz"]
    header, _ = unpack(files[0].read_bytes(), expected_model_id=codec.model_id)
    assert (header.height, header.width, header.channels, header.num_patches, header.version) == (8, 64, 1, 1, 2)
    main(["decompress", *map(str, files), "-o", str(root / "d"), "-m", str(model)])
    values = np.load(root / "d" / "cube.npy")
    assert (root / "d" / "cube.obj").exists() or values.max() <= 0.5 or values.min() >= 0.5
    assert values.shape == (8, 8, 8, 1) and values.dtype == np.float32
    assert np.array_equal(values, codec.decompress(files[0].read_bytes()))
    # What compress reports is exactly what decodes.
    signals = load_signal_set(DataConfig(path=str(meshes / "cube.obj"), modality="voxels", transform="size=8"))
    again = codec.compress_signals(signals, 2)[0]
    assert np.array_equal(again.reconstruction, values)
    assert again.data == files[0].read_bytes()


@pytest.mark.parametrize("case", ["folder", "rd", "build-over-network", "build-exists"])
def test_signal_codec_commands_refuse_what_they_cannot_do(voxel_codec, tmp_path, case):
    import subprocess

    root, meshes, model = voxel_codec
    if case == "folder":
        args = ["compress", meshes, "-m", model, "-o", tmp_path]
    elif case == "rd":
        args = ["rd", "--data", meshes, "-m", model, "-o", tmp_path]
    elif case == "build-over-network":
        run = root / "voxels-meshes-run"
        args = ["codec-build", run, "--data", meshes, "-o", run / "model.safetensors"]
    else:
        args = ["codec-build", root / "voxels-meshes-run", "--data", meshes, "-o", model]
    before = Path(model).read_bytes()
    result = subprocess.run([sys.executable, "-m", "metasparse.cli", *map(str, args)], capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert Path(model).read_bytes() == before


def test_signal_files_are_refused_by_other_models_and_when_corrupt(voxel_codec):
    _, meshes, model = voxel_codec
    codec = load_codec(str(model))
    signals = load_signal_set(DataConfig(path=str(meshes / "prism.obj"), modality="voxels", transform="size=8"))
    data = codec.compress_signals(signals, 1)[0].data
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    with pytest.raises(BitstreamError):
        codec.decompress(bytes(flipped))
    with pytest.raises(BitstreamError):
        codec.decompress(data[:-3])
    # A grid of another size is not this model's signal.
    other = load_signal_set(DataConfig(path=str(meshes / "prism.obj"), modality="voxels", transform="size=6"))
    with pytest.raises(DataError, match="grid"):
        codec.compress_signals(other, 1)
    with pytest.raises(ModelError, match="signal-codec"):
        ImageCodec.load(model)


def test_sphere_codec_round_trips_a_grid_file(tmp_path, capsys):
    torch.set_num_threads(1)
    grids = write_grids(tmp_path / "era5", n=3, shape=(6, 12))
    model = build(tmp_path, "sphere-era5", grids, "rolls=2", "train")
    codec = load_codec(str(model))
    assert codec.grid_shape == (6, 12) and codec.modality == "sphere"
    source = grids / "era5_t2m_normalized_0002.npy"
    main(["compress", str(source), "-o", str(tmp_path / "t.mspz"), "-m", str(model)])
    assert "t.mspz" in capsys.readouterr().out
    main(["decompress", str(tmp_path / "t.mspz"), "-o", str(tmp_path / "t.npy"), "-m", str(model)])
    decoded = np.load(tmp_path / "t.npy")
    assert decoded.shape == (6, 12, 1)
    assert np.isfinite(decoded).all() and 0 <= decoded.min() and decoded.max() <= 1


def test_fuzzed_signal_files_are_refused_or_decode_to_the_grid(voxel_codec):
    """Re-checksummed payloads and headers of a voxel file: a grid of the model's shape or a
    BitstreamError, nothing else."""
    import dataclasses

    from metasparse.codec.format.bitstream import pack

    _, meshes, model = voxel_codec
    codec = load_codec(str(model))
    signals = load_signal_set(DataConfig(path=str(meshes / "cube.obj"), modality="voxels", transform="size=8"))
    original = codec.compress_signals(signals, 2)[0].data
    header, payload = unpack(original)
    rng = np.random.default_rng(1)
    outcomes = {"refused": 0, "decoded": 0}
    for trial in range(120):
        if trial % 2:
            body = bytearray(payload)
            body[rng.integers(len(body))] ^= int(rng.integers(1, 256))
            data = pack(header, bytes(body[: rng.integers(0, len(body) + 1)] if trial % 3 == 0 else body))
        else:
            field = ["height", "width", "channels", "bit_depth", "patch_size", "quality_index"][trial % 6]
            try:
                data = pack(dataclasses.replace(header, **{field: int(rng.choice([1, 2, 7, 64, 512, 4096]))}),
                            payload)
            except BitstreamError:
                outcomes["refused"] += 1
                continue
        try:
            values = codec.decompress(data)
        except BitstreamError:
            outcomes["refused"] += 1
        else:
            assert values.shape == (8, 8, 8, 1) and np.isfinite(values).all()
            outcomes["decoded"] += 1
    assert outcomes["refused"] > 0
