import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metasparse.data.images import list_image_files, load_image, load_image_list, load_images, save_image
from metasparse.data.signals import SignalSet
from metasparse.errors import DataError


def rand_image(h, w, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def write_png(path, arr):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr).save(path)
    return path


def raw_png(width, height, rows: bytes, bit_depth=8, color_type=2) -> bytes:
    """A minimal PNG written by hand (for 16-bit colour and 0x0 images that Pillow will not write)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def folder(tmp_path):
    """Six 12x10 PNGs in two class subfolders, plus files the loader must skip."""
    root = tmp_path / "imgs"
    arrays = {}
    for k in range(6):
        name = f"{'b' if k % 2 else 'a'}/img_{k:03d}.png"
        arrays[name] = rand_image(12, 10, seed=k)
        write_png(root / name, arrays[name])
    (root / "notes.txt").write_text("not an image")
    (root / "a" / ".hidden.png").write_bytes(b"junk")
    write_png(root / ".cache" / "x.png", rand_image(3, 3))
    return root, dict(sorted(arrays.items()))


def test_load_folder(folder):
    root, arrays = folder
    s = load_images(root)
    assert isinstance(s, SignalSet)
    assert s.values.shape == (6, 12, 10, 3) and s.values.dtype == torch.uint8
    assert s.names == list(arrays)
    assert s.scale == pytest.approx(1 / 255)
    assert s.coords.shape == (12, 10, 2) and s.modality == "image"
    for i, arr in enumerate(arrays.values()):
        np.testing.assert_array_equal(s.values[i].numpy(), arr)
    assert float(s.targets().max()) <= 1.0


def test_list_and_single_file(folder):
    root, arrays = folder
    files = [root / n for n in reversed(arrays)]
    s = load_images(files)
    assert s.names == [Path(n).name for n in reversed(arrays)]
    np.testing.assert_array_equal(s.values[0].numpy(), arrays[list(arrays)[-1]])
    one = load_images(str(files[0]))
    assert len(one) == 1 and one.names == [files[0].name]
    found, names = list_image_files(root)
    assert [f.name for f in found] == [Path(n).name for n in arrays] and names == list(arrays)


def test_extensions_are_case_insensitive(tmp_path):
    Image.fromarray(rand_image(8, 8)).save(tmp_path / "x.JPEG", format="JPEG")
    Image.fromarray(rand_image(8, 8)).save(tmp_path / "y.Png")
    Image.fromarray(rand_image(8, 8)).save(tmp_path / "z.webp", lossless=True)
    Image.fromarray(rand_image(8, 8)).save(tmp_path / "w.bmp")
    Image.fromarray(rand_image(8, 8)).save(tmp_path / "v.tif")
    assert load_images(tmp_path).names == ["v.tif", "w.bmp", "x.JPEG", "y.Png", "z.webp"]


def test_parallel_equals_sequential(tmp_path):
    for k in range(12):
        Image.fromarray(rand_image(20, 16, seed=k)).save(tmp_path / f"{k:02d}.jpg", quality=90)
    a = load_images(tmp_path, workers=1)
    b = load_images(tmp_path, workers=3)
    assert torch.equal(a.values, b.values) and a.names == b.names


def test_transform_split_limit(folder):
    root, arrays = folder
    s = load_images(root, transform="resize:8", split="first:4", limit=3)
    assert s.values.shape == (3, 8, 8, 3)
    assert s.names == list(arrays)[:3]
    s = load_images(root, split="range:4-5")
    assert s.names == ["a/img_004.png", "b/img_005.png"]
    with pytest.raises(DataError, match="selects none"):
        load_images(root, split="range:100-200")


def test_different_sizes_need_a_transform(tmp_path):
    write_png(tmp_path / "a.png", rand_image(10, 12))
    write_png(tmp_path / "b.png", rand_image(14, 12))
    with pytest.raises(DataError, match=r"different sizes.*b\.png.*transform"):
        load_images(tmp_path)
    assert load_images(tmp_path, transform="resize:6").values.shape == (2, 6, 6, 3)
    images, names = load_image_list(tmp_path)
    assert [tuple(t.shape) for t in images] == [(10, 12, 3), (14, 12, 3)] and names == ["a.png", "b.png"]
    images[0][0, 0, 0] = 7  # writable memory


def test_transform_error_names_the_file(tmp_path):
    write_png(tmp_path / "small.png", rand_image(10, 10))
    with pytest.raises(DataError, match=r"small\.png.*smaller than the crop"):
        load_images(tmp_path, transform="center_crop:32")


def test_npz_and_npy(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "train.npz", images=imgs, labels=np.arange(5))
    s = load_images(tmp_path / "train.npz")
    assert torch.equal(s.values, torch.from_numpy(imgs))
    assert s.names[0] == "train/000000" and s.scale == pytest.approx(1 / 255)
    s = load_images(tmp_path / "train.npz", split="range:1-2", transform="resize:16")
    assert s.values.shape == (2, 16, 16, 3) and s.names == ["train/000001", "train/000002"]
    assert load_images(tmp_path / "train.npz", channels=1).values.shape == (5, 32, 32, 1)
    np.save(tmp_path / "grey.npy", imgs[:, :, :, 0])
    assert load_images(tmp_path / "grey.npy").values.shape == (5, 32, 32, 3)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"pictures": np.zeros((2, 4, 4, 3), np.uint8)}, "no 'images' array"),
        ({"images": np.zeros((2, 4, 4, 3), np.float32)}, "uint8"),
        ({"images": np.zeros((2, 4, 4, 5), np.uint8)}, "shape"),
        ({"images": np.zeros((0, 4, 4, 3), np.uint8)}, "empty"),
        ({"images": np.zeros((2, 1, 4, 3), np.uint8)}, "too small"),
    ],
)
def test_bad_npz(tmp_path, arrays, match):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=match):
        load_images(tmp_path / "d.npz")


def test_corrupt_npz(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"d\.npz"):
        load_images(tmp_path / "d.npz")


# ------------------------------------------------------------------ the odd-input policy


def test_greyscale_replicated_or_kept(tmp_path):
    g = rand_image(6, 7, c=1)
    p = write_png(tmp_path / "g.png", g)
    rgb = load_image(p)
    assert rgb.shape == (6, 7, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], g[:, :, 0])
    np.testing.assert_array_equal(load_image(p, channels=1), g)
    s = load_images(p, channels=1)
    assert s.channels == 1
    one_bit = tmp_path / "bw.png"
    Image.fromarray(g[:, :, 0] > 128).save(one_bit)
    assert set(np.unique(load_image(one_bit))) <= {0, 255}


def test_colour_to_one_channel_is_luma(tmp_path):
    arr = rand_image(5, 5)
    p = write_png(tmp_path / "c.png", arr)
    np.testing.assert_array_equal(
        load_image(p, channels=1)[:, :, 0], np.asarray(Image.fromarray(arr).convert("L"))
    )
    with pytest.raises(DataError, match="channels"):
        load_image(p, channels=2)


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = [200, 100, 0]
    rgba[0, :, 3] = [0, 255, 128]
    rgba[1, :, 3] = 255
    p = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(p)
    out = load_image(p)
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])  # transparent -> white
    np.testing.assert_array_equal(out[0, 1], [200, 100, 0])  # opaque -> colour
    expected = np.round((np.array([200, 100, 0]) * 128 + 255 * 127) / 255)
    np.testing.assert_array_equal(out[0, 2], expected)
    la = tmp_path / "la.png"
    Image.fromarray(np.stack([np.full((2, 2), 10, np.uint8), np.zeros((2, 2), np.uint8)], -1), "LA").save(la)
    np.testing.assert_array_equal(load_image(la), np.full((2, 2, 3), 255))


def test_palette_images(tmp_path):
    arr = rand_image(8, 8)
    pal = Image.fromarray(arr).quantize(16)
    pal.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out, np.asarray(pal.convert("RGB")))
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pt.png", transparency=0)
    idx = np.asarray(pal)
    out = load_image(tmp_path / "pt.png")
    assert (out[idx == 0] == 255).all()
    gif = tmp_path / "p.gif"
    pal.save(gif)
    assert load_image(gif).shape == (8, 8, 3)


def test_16_bit_greyscale_is_rounded(tmp_path):
    v = np.array([[0, 128, 257, 65535], [32896, 32895, 1000, 65000]], np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(v).save(p)
    out = load_image(p, channels=1)[:, :, 0]
    np.testing.assert_array_equal(out, np.round(v / 257).astype(np.uint8))
    assert load_images(p).scale == pytest.approx(1 / 255)


def test_16_bit_colour_keeps_the_high_byte(tmp_path):
    v = np.random.default_rng(0).integers(0, 65536, (3, 4, 3)).astype(np.uint16)
    rows = b"".join(b"\x00" + v[y].astype(">u2").tobytes() for y in range(3))
    p = tmp_path / "c16.png"
    p.write_bytes(raw_png(4, 3, rows, bit_depth=16, color_type=2))
    np.testing.assert_array_equal(load_image(p), (v >> 8).astype(np.uint8))


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((4, 8, 3), np.uint8)
    arr[0, 0] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    p = tmp_path / "o.jpg"
    Image.fromarray(arr).save(p, exif=exif, quality=100)
    out = load_image(p)
    assert out.shape == (8, 4, 3)
    assert out[0, -1].mean() > 128


# ------------------------------------------------------------------ bad inputs


def test_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_images(tmp_path / "nope")
    with pytest.raises(DataError, match="no such file"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty.*no image files"):
        load_images(tmp_path / "empty")
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="no image files"):
        load_images(tmp_path / "txt")
    with pytest.raises(DataError, match="no input files"):
        load_images([])
    with pytest.raises(DataError, match="is a folder"):
        load_image(tmp_path / "txt")


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_corrupt_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(os.urandom(300))
    with pytest.raises(DataError) as err:
        load_images(tmp_path)
    assert "bad.png" in one_line(err) and "not an image" in one_line(err)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path, fmt):
    p = tmp_path / f"t.{fmt.lower()}"
    Image.fromarray(rand_image(64, 64)).save(p, format=fmt)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    write_png(tmp_path / "ok.png", rand_image(64, 64))
    with pytest.raises(DataError) as err:
        load_images(tmp_path, workers=2)
    assert p.name in one_line(err)


def test_zero_and_one_pixel_images(tmp_path):
    zero = tmp_path / "zero.png"
    zero.write_bytes(raw_png(0, 0, b""))
    with pytest.raises(DataError, match=r"zero\.png"):
        load_image(zero)
    one = write_png(tmp_path / "one.png", rand_image(1, 1))
    with pytest.raises(DataError, match=r"one\.png.*too small \(1x1\)"):
        load_image(one)
    with pytest.raises(DataError, match="too small"):
        load_images(tmp_path / "one.png")


def test_non_image_file_given_explicitly(tmp_path):
    p = tmp_path / "readme.txt"
    p.write_text("hello")
    with pytest.raises(DataError, match=r"readme\.txt.*not an image"):
        load_images([p])
    npz = tmp_path / "x.npz"
    np.savez(npz, images=np.zeros((1, 4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="on its own"):
        load_images([npz])


def test_custom_transform_output_is_checked(tmp_path):
    write_png(tmp_path / "a.png", rand_image(8, 8))
    with pytest.raises(DataError, match="dtype"):
        load_images(tmp_path, transform=lambda a: a.astype(np.float32))
    s = load_images(tmp_path, transform=lambda a: a[:4, :4])
    assert s.values.shape == (1, 4, 4, 3)


# ------------------------------------------------------------------ saving


def test_save_image_round_trip_and_atomic(tmp_path):
    arr = rand_image(9, 11)
    p = save_image(tmp_path / "sub" / "x.png", arr)
    np.testing.assert_array_equal(load_image(p), arr)
    save_image(p, torch.from_numpy(arr[::-1].copy()))  # overwrite, from a tensor
    np.testing.assert_array_equal(load_image(p), arr[::-1])
    assert sorted(os.listdir(p.parent)) == ["x.png"]  # no temporary file left
    ref = tmp_path / "ref.bin"
    ref.write_bytes(b"")
    assert p.stat().st_mode & 0o777 == ref.stat().st_mode & 0o777


def test_save_image_forms(tmp_path):
    f = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    save_image(tmp_path / "f.png", f)
    np.testing.assert_array_equal(load_image(tmp_path / "f.png", channels=1)[:, :, 0], np.round(f * 255))
    save_image(tmp_path / "q.jpg", rand_image(16, 16), quality=95)
    assert load_image(tmp_path / "q.jpg").shape == (16, 16, 3)
    with pytest.raises(DataError, match="extension"):
        save_image(tmp_path / "x.xyz", rand_image(4, 4))
    with pytest.raises(DataError, match="alpha"):
        save_image(tmp_path / "a.jpg", rand_image(4, 4, c=4))
    with pytest.raises(DataError, match="dtype"):
        save_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.int64))
    with pytest.raises(DataError, match="shape"):
        save_image(tmp_path / "a.png", np.zeros((4, 4, 2), np.uint8))
    assert not any(n.endswith(".tmp") for n in os.listdir(tmp_path))


def test_extra_paths_add_folders_and_a_split_keeps_each_folders_held_out_names(tmp_path):
    from tests.helpers import write_images

    from metasparse.config import DataConfig
    from metasparse.modalities.loading import BatchSource

    first = write_images(tmp_path / "first", n=6, size=8)
    second = write_images(tmp_path / "second", n=5, size=8)
    alone = BatchSource(DataConfig(path=str(first), split="train:0.3", patch=4), "cpu")
    mixed = BatchSource(DataConfig(path=str(first), extra_paths=(str(second),), split="train:0.3", patch=4), "cpu")
    everything = BatchSource(DataConfig(path=str(first), extra_paths=(str(second),), patch=4), "cpu")
    assert len(everything) == 11
    assert set(alone.names) <= set(mixed.names) and len(mixed) > len(alone)
    held_out_of_first = {f"img{i}.png" for i in range(6)} - set(alone.names)
    assert held_out_of_first  # the split holds some out, so the check below can fail
    assert held_out_of_first.isdisjoint(mixed.names)
