"""The papers' image transforms, selectable by name.

Every transform takes a decoded image (a uint8 ``(H, W, C)`` numpy array, ``C`` in 1, 3 or 4,
or a ``PIL.Image``) and returns a uint8 ``(H, W, C)`` numpy array. Transforms run once, when a
dataset is loaded, never inside a training step.

Resizing uses Pillow's **BICUBIC** filter by default. Pillow's resampling is antialiased: when
shrinking, the filter support is widened by the scale factor, so a downscale averages over all
source pixels instead of skipping them (like torchvision's ``antialias=True``). ``"lanczos"``,
``"bilinear"``, ``"box"`` and ``"nearest"`` can be chosen through the ``resample`` argument.

Centre crops follow torchvision's ``CenterCrop`` rounding (``top = round((H - h) / 2)``), and
``resize_short_crop`` computes the long side like torchvision's ``Resize(int)``
(``int(short * long / short_in)``), so the datasets match the reference code pixel for pixel up
to the choice of filter.

String specs, for the CLI and preset configs::

    identity                         no change
    center_crop:178                  centre crop 178x178 (CelebA, Meta-SparseINR)
    center_crop:178x218              centre crop 178 wide, 218 tall
    resize:64                        resize to 64x64 (aspect ratio not kept)
    resize_short_crop:200,178        short side to 200, then centre crop 178 (Imagenette)
    resize_short_crop                the same (those are the defaults)
    crop_resize:89,64                centre crop 89x89, then resize to 64x64 (CelebA half-res)
    center_crop:178+resize:64        transforms chained with "+", applied left to right

Sizes in strings are ``N`` (square) or ``WxH``, width first, as image sizes are usually written
(CelebA's aligned images are 178x218: 178 wide, 218 tall). In Python, sizes are an ``int`` or a
``(height, width)`` tuple, as in torch and torchvision.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from metasparse.errors import DataError
from metasparse.utils.registry import Registry

__all__ = [
    "RESAMPLE_FILTERS",
    "TRANSFORMS",
    "CenterCrop",
    "Compose",
    "CropResize",
    "Identity",
    "Resize",
    "ResizeShortCrop",
    "Transform",
    "available_transforms",
    "parse_transform",
    "register_transform",
]

Size = int | tuple[int, int]

RESAMPLE_FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}


def _hw(size: Size, what: str) -> tuple[int, int]:
    """An int or an (height, width) pair as a validated (height, width) tuple."""
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        try:
            h, w = (int(s) for s in size)
        except (TypeError, ValueError):
            raise DataError(f"{what} must be an int or a (height, width) pair, got {size!r}") from None
    if h <= 0 or w <= 0:
        raise DataError(f"{what} must be positive, got {h}x{w} (height x width)")
    return h, w


def _size_spec(hw: tuple[int, int]) -> str:
    h, w = hw
    return str(h) if h == w else f"{w}x{h}"


def _as_array(img) -> np.ndarray:
    """A PIL image or an array as a uint8 (H, W, C) array."""
    if isinstance(img, Image.Image):
        if img.mode not in ("L", "RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
        img = np.asarray(img)
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise DataError(f"transforms take uint8 images, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise DataError(f"transforms take (H, W, C) images with C in 1, 3, 4, got shape {arr.shape}")
    return arr


def _center_crop(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    H, W = arr.shape[:2]
    if h > H or w > W:
        raise DataError(
            f"image of {W}x{H} (width x height) is smaller than the crop {w}x{h}; "
            "resize it first (e.g. resize_short_crop) or choose a smaller crop"
        )
    top = round((H - h) / 2.0)
    left = round((W - w) / 2.0)
    return arr[top : top + h, left : left + w]


def _resize(arr: np.ndarray, hw: tuple[int, int], resample: str) -> np.ndarray:
    h, w = hw
    if arr.shape[:2] == (h, w):
        return arr
    channels = arr.shape[2]
    img = Image.fromarray(arr[:, :, 0] if channels == 1 else arr)
    out = np.asarray(img.resize((w, h), RESAMPLE_FILTERS[resample]))
    return out[:, :, None] if channels == 1 else out


def _check_resample(resample: str) -> str:
    if resample not in RESAMPLE_FILTERS:
        raise DataError(
            f"unknown resampling filter {resample!r}; choose one of {', '.join(RESAMPLE_FILTERS)}"
        )
    return resample


class Transform:
    """Base class: ``transform(image) -> uint8 (H, W, C) array``; ``spec`` parses back to it."""

    name = "identity"

    def __call__(self, img) -> np.ndarray:
        return self.apply(_as_array(img))

    def apply(self, arr: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the output for an input of that size."""
        raise NotImplementedError  # pragma: no cover - overridden

    @property
    def spec(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Transform) and self.spec == other.spec

    def __hash__(self) -> int:
        return hash(self.spec)


class Identity(Transform):
    """No change (the image is only checked to be uint8 HWC)."""

    name = "identity"

    def apply(self, arr: np.ndarray) -> np.ndarray:
        return arr

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width


class CenterCrop(Transform):
    """Centre crop to ``size`` (int or (height, width)); CelebA 178x218 → 178x178."""

    name = "center_crop"

    def __init__(self, size: Size = 178):
        self.size = _hw(size, "center_crop size")

    def apply(self, arr: np.ndarray) -> np.ndarray:
        return _center_crop(arr, self.size)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return self.size

    @property
    def spec(self) -> str:
        return f"{self.name}:{_size_spec(self.size)}"


class Resize(Transform):
    """Resize to exactly ``size`` (int or (height, width)); the aspect ratio is not kept."""

    name = "resize"

    def __init__(self, size: Size, resample: str = "bicubic"):
        self.size = _hw(size, "resize size")
        self.resample = _check_resample(resample)

    def apply(self, arr: np.ndarray) -> np.ndarray:
        return _resize(arr, self.size, self.resample)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return self.size

    @property
    def spec(self) -> str:
        return f"{self.name}:{_size_spec(self.size)}"


class ResizeShortCrop(Transform):
    """Resize so the short side is ``short`` (aspect kept), then centre crop ``crop``.

    The Meta-SparseINR Imagenette protocol is ``ResizeShortCrop(200, 178)``.
    """

    name = "resize_short_crop"

    def __init__(self, short: int = 200, crop: Size = 178, resample: str = "bicubic"):
        self.short = _hw(short, "resize_short_crop short side")[0]
        self.crop = _hw(crop, "resize_short_crop crop")
        self.resample = _check_resample(resample)
        if min(self.crop) > self.short:
            raise DataError(
                f"resize_short_crop: the crop {_size_spec(self.crop)} is larger than the short side {self.short}"
            )

    def _resized(self, height: int, width: int) -> tuple[int, int]:
        if height <= width:
            return self.short, int(self.short * width / height)
        return int(self.short * height / width), self.short

    def apply(self, arr: np.ndarray) -> np.ndarray:
        resized = _resize(arr, self._resized(*arr.shape[:2]), self.resample)
        return _center_crop(resized, self.crop)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return self.crop

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.short},{_size_spec(self.crop)}"


class CropResize(Transform):
    """Centre crop ``crop``, then resize to ``size``.

    CelebA half-res (89x109) for the Functa / MSCN 64x64 faces: ``CropResize(89, 64)``.
    """

    name = "crop_resize"

    def __init__(self, crop: Size, size: Size, resample: str = "bicubic"):
        self.crop = _hw(crop, "crop_resize crop")
        self.size = _hw(size, "crop_resize size")
        self.resample = _check_resample(resample)

    def apply(self, arr: np.ndarray) -> np.ndarray:
        return _resize(_center_crop(arr, self.crop), self.size, self.resample)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return self.size

    @property
    def spec(self) -> str:
        return f"{self.name}:{_size_spec(self.crop)},{_size_spec(self.size)}"


class Compose(Transform):
    """Transforms applied left to right (``"a+b"`` in string specs)."""

    name = "compose"

    def __init__(self, transforms: list[Transform]):
        self.transforms = list(transforms)

    def apply(self, arr: np.ndarray) -> np.ndarray:
        for t in self.transforms:
            arr = t.apply(arr)
        return arr

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        for t in self.transforms:
            height, width = t.output_size(height, width)
        return height, width

    @property
    def spec(self) -> str:
        return "+".join(t.spec for t in self.transforms) or "identity"


# --------------------------------------------------------------------------------------------
# registry and parser

# name → factory(*args) -> Transform; the built-in transforms are added below.
TRANSFORMS: Registry[Callable[..., Transform]] = Registry("transform")


def register_transform(name: str, factory: Callable[..., Transform] | None = None):
    """Register ``factory(*args) -> Transform`` under ``name`` (usable as a decorator).

    String arguments after ``name:`` are split on commas; each is passed as an int or, for
    ``WxH``, as a (height, width) tuple.
    """

    def deco(f):
        return TRANSFORMS.add(name, f)

    return deco(factory) if factory is not None else deco


for _builtin in (Identity, CenterCrop, Resize, ResizeShortCrop, CropResize):
    TRANSFORMS.add(_builtin.name, _builtin)


def available_transforms() -> list[str]:
    return sorted(TRANSFORMS)


def _parse_arg(text: str, spec: str):
    text = text.strip().lower()
    try:
        if "x" in text:
            w, h = text.split("x")
            return int(h), int(w)
        return int(text)
    except ValueError:
        raise DataError(
            f"bad transform argument {text!r} in {spec!r}: expected N or WxH (e.g. 178x218)"
        ) from None


def _parse_one(text: str, spec: str) -> Transform:
    name, _, args = text.strip().partition(":")
    name = name.strip().lower().replace("-", "_")
    if name not in TRANSFORMS:
        raise DataError(
            f"unknown transform {name!r} in {spec!r}; available: {', '.join(available_transforms())}"
        )
    values = [_parse_arg(a, spec) for a in args.split(",")] if args.strip() else []
    try:
        return TRANSFORMS[name](*values)
    except TypeError:
        raise DataError(f"wrong number of arguments for transform {name!r} in {spec!r}") from None


def parse_transform(spec: str | Transform | Callable | None) -> Transform | Callable:
    """A transform from a spec string (see the module docstring), or ``spec`` itself.

    ``None`` and ``""`` give :class:`Identity`; a :class:`Transform` or any other callable is
    returned unchanged. Raises :class:`~metasparse.errors.DataError` on an unknown name or bad
    arguments.
    """
    if spec is None:
        return Identity()
    if isinstance(spec, Transform) or callable(spec):
        return spec
    if not isinstance(spec, str):
        raise DataError(f"a transform must be a string or a callable, got {type(spec).__name__}")
    parts = [p for p in spec.split("+") if p.strip()]
    if not parts:
        return Identity()
    transforms = [_parse_one(p, spec) for p in parts]
    return transforms[0] if len(transforms) == 1 else Compose(transforms)
