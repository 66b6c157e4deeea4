"""Classical image codecs for rate-distortion comparisons, measured on their real output bytes.

Codecs and what ``quality`` means for each:

========== ================================ ====================================================
name       library                          quality
========== ================================ ====================================================
jpeg       Pillow (libjpeg)                 libjpeg quality 1..100; Huffman tables optimised
jpeg2000   Pillow (OpenJPEG)                target bits per pixel (9/7 wavelet, colour transform,
                                            raw codestream: no JP2 boxes)
webp       Pillow (libwebp)                 quality 0..100, slowest/best method (6)
avif       Pillow (libavif)                 quality 0..100 at the library's default speed
hevc       pillow-heif (x265, optional)     quality 0..100 (HEIF container, HEVC intra)
jpegxl     imagecodecs (libjxl, optional)   libjxl quality 0..99 (100 would be lossless)
========== ================================ ====================================================

Images are ``uint8`` arrays ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``. Chroma subsampling is
each codec's default (4:2:0) unless ``chroma_subsampling="4:4:4"`` is asked for, which JPEG,
AVIF and HEVC support; WebP is always 4:2:0, and JPEG 2000 and JPEG XL do not subsample.
The byte counts include each format's own headers (JFIF, the JPEG 2000 codestream's markers,
RIFF, ISOBMFF boxes), as a file on disk would; on tiny images these dominate. JPEG 2000 is
written as a bare codestream (``.j2k``), which is valid on its own: the JP2 wrapper would add
about 85 bytes that carry no image data (2.1 instead of 1.4 bpp at best on a 32x32 image).

``hevc`` and ``jpegxl`` need the optional packages ``pillow-heif`` and ``imagecodecs``
(``pip install 'metasparse[baselines]'``); :func:`unavailable_codecs` says why a codec is
missing, and every other function works without them.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, features

from metasparse.errors import ConfigError
from metasparse.utils.registry import Registry

CHROMA_SUBSAMPLINGS = ("4:2:0", "4:4:4")


@dataclass(frozen=True)
class BaselineCodec:
    """A classical codec: how it encodes and decodes, its quality sweep and range, whether it runs here."""

    name: str
    # (pixels, quality, chroma subsampling) -> (decoded pixels, compressed bytes)
    encode: Callable[[np.ndarray, float, str], tuple[np.ndarray, int]]
    # Sweeps chosen to span roughly 0.1 to 4 bits per pixel on natural RGB photographs
    # (e.g. 512x512 or Kodak-sized images), ordered from lowest to highest rate.
    qualities: tuple[float, ...]
    quality_range: tuple[float, float]
    unavailable_reason: Callable[[], str | None]  # None when the codec can run here


# name → BaselineCodec, in the order of the table above (registered at the bottom of this module).
BASELINES: Registry[BaselineCodec] = Registry("baseline codec")

def _pillow_reason(kind: str, feature: str, label: str) -> str | None:
    check = features.check_codec if kind == "codec" else features.check_module
    try:
        supported = bool(check(feature))
    except ValueError:  # a Pillow that does not even know the feature name
        supported = False
    return None if supported else f"this Pillow was built without {label} support"


def _hevc_reason() -> str | None:
    try:
        import pillow_heif
    except ImportError:
        return "needs the optional package pillow-heif (pip install pillow-heif)"
    info = pillow_heif.libheif_info()
    if not info.get("HEIF"):
        return "pillow-heif is installed but its libheif has no HEVC encoder"
    return None


def _jpegxl_reason() -> str | None:
    try:
        import imagecodecs
    except ImportError:
        return "needs the optional package imagecodecs (pip install imagecodecs)"
    if not getattr(getattr(imagecodecs, "JPEGXL", None), "available", False):
        return "imagecodecs is installed but was built without JPEG XL"
    return None


def unavailable_codecs() -> dict[str, str]:
    """Codecs that cannot run here, each with the reason and how to get it."""
    reasons = {name: codec.unavailable_reason() for name, codec in BASELINES.items()}
    return {name: reason for name, reason in reasons.items() if reason is not None}


def available_codecs() -> list[str]:
    """Names of the codecs usable here, in the order of ``CODEC_NAMES``."""
    missing = unavailable_codecs()
    return [name for name in CODEC_NAMES if name not in missing]


def _check_name(name: str) -> None:
    if name not in CODEC_NAMES:
        raise ConfigError(f"unknown baseline codec {name!r}; choose from {', '.join(CODEC_NAMES)}")


def default_qualities(name: str) -> list[float]:
    """The quality sweep for ``name``, lowest rate first (``BaselineCodec.qualities``)."""
    _check_name(name)
    return list(BASELINES[name].qualities)


def _as_channels_last(image: np.ndarray) -> np.ndarray:
    """Validate and return a contiguous (H, W) or (H, W, 3) uint8 array."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"baseline codecs take uint8 images, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"image must be (H, W), (H, W, 1) or (H, W, 3), got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"image must not be empty, got shape {array.shape}")
    return np.ascontiguousarray(array)


def _pillow_round_trip(image: np.ndarray, image_format: str, **options) -> tuple[np.ndarray, int]:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=image_format, **options)
    encoded = buffer.getvalue()
    with Image.open(io.BytesIO(encoded)) as decoded_image:
        # WebP stores grey images as colour; bring every result back to the input's mode.
        decoded = np.asarray(decoded_image.convert("L" if image.ndim == 2 else "RGB"))
    return decoded, len(encoded)


def _jpeg(image: np.ndarray, quality: float, chroma_subsampling: str) -> tuple[np.ndarray, int]:
    options = {"quality": round(quality), "optimize": True}
    if image.ndim == 3:
        options["subsampling"] = chroma_subsampling
    return _pillow_round_trip(image, "JPEG", **options)


def _jpeg2000(image: np.ndarray, bits_per_pixel: float, chroma_subsampling: str) -> tuple[np.ndarray, int]:
    channels = 1 if image.ndim == 2 else 3
    # Pillow's "rates" are compression ratios against the raw 8-bit-per-sample size.
    compression_ratio = 8.0 * channels / bits_per_pixel
    return _pillow_round_trip(
        image,
        "JPEG2000",
        quality_mode="rates",
        quality_layers=[compression_ratio],
        irreversible=True,  # the lossy 9/7 wavelet; the reversible 5/3 is for lossless coding
        mct=1 if channels == 3 else 0,  # RGB -> YCbCr before the wavelet, as in every lossy use
        no_jp2=True,
    )


def _webp(image: np.ndarray, quality: float, chroma_subsampling: str) -> tuple[np.ndarray, int]:
    return _pillow_round_trip(image, "WEBP", quality=round(quality), method=6)


def _avif(image: np.ndarray, quality: float, chroma_subsampling: str) -> tuple[np.ndarray, int]:
    options = {"quality": round(quality)}
    if image.ndim == 3:  # grey images are 4:0:0, which Pillow picks by itself
        options["subsampling"] = chroma_subsampling
    return _pillow_round_trip(image, "AVIF", **options)


def _hevc(image: np.ndarray, quality: float, chroma_subsampling: str) -> tuple[np.ndarray, int]:
    import pillow_heif

    mode = "L" if image.ndim == 2 else "RGB"
    heif_file = pillow_heif.from_bytes(mode, (image.shape[1], image.shape[0]), image.tobytes())
    buffer = io.BytesIO()
    options = {"quality": round(quality)}
    if image.ndim == 3:
        options["chroma"] = int(chroma_subsampling.replace(":", ""))
    heif_file.save(buffer, **options)
    encoded = buffer.getvalue()
    decoded = np.asarray(pillow_heif.open_heif(io.BytesIO(encoded), convert_hdr_to_8bit=True))
    if decoded.ndim == 3 and image.ndim == 2:
        decoded = decoded[:, :, 0]
    return np.ascontiguousarray(decoded, dtype=np.uint8), len(encoded)


def _jpegxl(image: np.ndarray, quality: float, chroma_subsampling: str) -> tuple[np.ndarray, int]:
    import imagecodecs

    encoded = imagecodecs.jpegxl_encode(image, level=float(quality))
    decoded = np.asarray(imagecodecs.jpegxl_decode(encoded))
    return decoded.astype(np.uint8, copy=False), len(encoded)


def encode_decode(
    name: str, image: np.ndarray, quality: float, chroma_subsampling: str = "4:2:0"
) -> tuple[np.ndarray, int]:
    """Compress ``image`` with codec ``name`` at ``quality``, decompress it, and return
    ``(decoded uint8 image of the input's shape, size of the compressed file in bytes)``."""
    _check_name(name)
    codec = BASELINES[name]
    reason = codec.unavailable_reason()
    if reason is not None:
        raise ConfigError(f"baseline codec {name!r} is not available: {reason}")
    if chroma_subsampling not in CHROMA_SUBSAMPLINGS:
        raise ValueError(
            f"chroma_subsampling must be one of {CHROMA_SUBSAMPLINGS}, got {chroma_subsampling!r}"
        )
    low, high = codec.quality_range
    if not low <= float(quality) <= high:
        raise ValueError(f"quality for {name} must be in [{low}, {high}], got {quality}")
    pixels = _as_channels_last(image)
    decoded, num_bytes = codec.encode(pixels, float(quality), chroma_subsampling)
    if decoded.shape != pixels.shape:
        raise RuntimeError(f"{name} decoded an image of shape {decoded.shape}, expected {pixels.shape}")
    return decoded.reshape(np.shape(image)), num_bytes


BASELINES.add("jpeg", BaselineCodec(
    "jpeg", _jpeg, (2, 5, 10, 20, 30, 50, 70, 85, 92, 97), (1, 100),
    lambda: _pillow_reason("codec", "jpg", "JPEG")))
BASELINES.add("jpeg2000", BaselineCodec(
    "jpeg2000", _jpeg2000, (0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 1.5, 2.0, 3.0, 4.0), (1e-3, 64.0),
    lambda: _pillow_reason("codec", "jpg_2000", "JPEG 2000 (OpenJPEG)")))
BASELINES.add("webp", BaselineCodec(
    "webp", _webp, (0, 5, 15, 30, 50, 70, 80, 90, 95, 100), (0, 100),
    lambda: _pillow_reason("module", "webp", "WebP")))
BASELINES.add("avif", BaselineCodec(
    "avif", _avif, (0, 10, 25, 40, 50, 60, 70, 80, 90, 97), (0, 100),
    lambda: _pillow_reason("module", "avif", "AVIF")))
BASELINES.add("hevc", BaselineCodec(
    "hevc", _hevc, (5, 10, 20, 30, 40, 50, 60, 70, 80), (0, 100), _hevc_reason))
BASELINES.add("jpegxl", BaselineCodec(
    "jpegxl", _jpegxl, (0, 10, 25, 40, 55, 70, 80, 88, 93, 97), (0, 99), _jpegxl_reason))

CODEC_NAMES: tuple[str, ...] = tuple(BASELINES)
