import sys

import numpy as np
import pytest

from metasparse.codec import baselines
from metasparse.codec.baselines import (
    CODEC_NAMES,
    available_codecs,
    default_qualities,
    encode_decode,
    unavailable_codecs,
)
from metasparse.errors import ConfigError
from metasparse.metrics import psnr

AVAILABLE = available_codecs()


def _test_image(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth gradients, an edge and mild texture: compresses like a small photograph."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 120 + 80 * np.sin(rows / 9.0) * np.cos(columns / 13.0)
    green = 60 + 1.5 * columns + 40 * (rows > height / 2)
    blue = 200 - 1.2 * rows + 20 * np.sin((rows + columns) / 5.0)
    image = np.stack([red, green, blue], axis=-1) + rng.normal(0, 4, size=(height, width, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def test_the_pillow_codecs_are_available_and_the_rest_explain_why_not() -> None:
    for name in ("jpeg", "jpeg2000", "webp"):
        assert name in AVAILABLE
    missing = unavailable_codecs()
    assert set(AVAILABLE) | set(missing) == set(CODEC_NAMES)
    assert not set(AVAILABLE) & set(missing)
    assert all(reason for reason in missing.values())


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_colour_round_trip_gives_a_faithful_image_and_real_bytes(name: str) -> None:
    if name not in AVAILABLE:
        pytest.skip(f"{name}: {unavailable_codecs()[name]}")
    image = _test_image()
    middle = default_qualities(name)[len(default_qualities(name)) // 2 + 2]
    decoded, num_bytes = encode_decode(name, image, middle)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert 0 < num_bytes < image.nbytes
    assert psnr(image, decoded) > 25.0


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_grey_images_keep_their_shape(name: str) -> None:
    if name not in AVAILABLE:
        pytest.skip(f"{name}: {unavailable_codecs()[name]}")
    grey = _test_image()[:, :, 1].copy()
    quality = default_qualities(name)[-2]
    for image in (grey, grey[:, :, None]):
        decoded, num_bytes = encode_decode(name, image, quality)
        assert decoded.shape == image.shape and decoded.dtype == np.uint8 and num_bytes > 0
        assert psnr(image, decoded) > 25.0


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_higher_quality_settings_spend_more_bytes(name: str) -> None:
    if name not in AVAILABLE:
        pytest.skip(f"{name}: {unavailable_codecs()[name]}")
    image = _test_image(64, 64, seed=1)
    qualities = default_qualities(name)
    low_decoded, low_bytes = encode_decode(name, image, qualities[0])
    high_decoded, high_bytes = encode_decode(name, image, qualities[-1])
    assert high_bytes > low_bytes
    assert psnr(image, high_decoded) > psnr(image, low_decoded)


def test_default_sweeps_are_sorted_and_valid() -> None:
    for name in CODEC_NAMES:
        qualities = default_qualities(name)
        assert len(qualities) >= 8 and qualities == sorted(qualities)
    # For JPEG 2000 the setting is the bit rate itself.
    assert default_qualities("jpeg2000")[0] == pytest.approx(0.1)
    assert default_qualities("jpeg2000")[-1] == pytest.approx(4.0)


def test_jpeg2000_hits_the_requested_bits_per_pixel() -> None:
    image = _test_image(96, 96, seed=2)
    for target in (0.5, 1.0, 2.0):
        _, num_bytes = encode_decode("jpeg2000", image, target)
        assert num_bytes * 8 / (96 * 96) == pytest.approx(target, rel=0.25)


def test_jpeg2000_is_a_bare_codestream_without_jp2_boxes(monkeypatch) -> None:
    from PIL import Image

    written = []
    save = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", lambda im, fp, *a, **k: (save(im, fp, *a, **k), written.append(fp))[0])
    encode_decode("jpeg2000", _test_image(32, 32, seed=3), 0.1)
    assert written[0].getvalue()[:4] == b"\xff\x4f\xff\x51"  # SOC and SIZ markers, not a JP2 signature box


@pytest.mark.parametrize("name", ["jpeg", "avif", "hevc"])
def test_full_chroma_resolution_can_be_requested(name: str) -> None:
    if name not in AVAILABLE:
        pytest.skip(f"{name}: {unavailable_codecs()[name]}")
    image = _test_image()
    quality = default_qualities(name)[-3]
    decoded_420, _ = encode_decode(name, image, quality, chroma_subsampling="4:2:0")
    decoded_444, _ = encode_decode(name, image, quality, chroma_subsampling="4:4:4")
    assert decoded_444.shape == image.shape
    assert not np.array_equal(decoded_420, decoded_444)


def test_invalid_requests_are_rejected() -> None:
    image = _test_image()
    with pytest.raises(ConfigError, match="unknown baseline codec"):
        encode_decode("bpg", image, 30)
    with pytest.raises(ConfigError):
        default_qualities("bpg")
    with pytest.raises(ValueError, match="quality"):
        encode_decode("jpeg", image, 150)
    with pytest.raises(ValueError, match="uint8"):
        encode_decode("jpeg", image.astype(np.float32), 50)
    with pytest.raises(ValueError, match="shape"):
        encode_decode("jpeg", image[:, :, :2], 50)
    with pytest.raises(ValueError, match="chroma"):
        encode_decode("jpeg", image, 50, chroma_subsampling="4:1:1")


def test_missing_optional_packages_make_their_codecs_unavailable(monkeypatch) -> None:
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    monkeypatch.setitem(sys.modules, "imagecodecs", None)
    missing = unavailable_codecs()
    assert "pillow-heif" in missing["hevc"] and "imagecodecs" in missing["jpegxl"]
    assert "hevc" not in available_codecs() and "jpeg" in available_codecs()
    with pytest.raises(ConfigError, match="not available"):
        encode_decode("hevc", _test_image(), 50)
    assert baselines.default_qualities("hevc")  # the sweep is still known
