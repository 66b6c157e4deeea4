"""Real colour photos that need no download: the ones scikit-image ships inside its package.

Only files present in the installed ``skimage/data`` folder are used, read directly with Pillow,
so nothing here ever goes through scikit-image's download cache. Available names:

============================  =========  ================================================
name                          size (WxH)  what
============================  =========  ================================================
``astronaut``                 512x512    portrait of astronaut Eileen Collins
``chelsea``                   451x300    a cat
``coffee``                    600x400    a cup of coffee
``rocket``                    640x427    a rocket on its launch pad
``hubble_deep_field``         1000x872   Hubble deep field (galaxies on black)
``motorcycle``                741x500    a motorcycle (left view of a stereo pair)
``immunohistochemistry``      512x512    a stained tissue sample under a microscope
``retina``                    1411x1411  a retina fundus photo (a disc on black)
============================  =========  ================================================

``motorcycle_right`` (the other stereo view) can be asked for by name; it is not in the
default list because it nearly duplicates ``motorcycle``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from metasparse.data.images import load_image, save_image
from metasparse.data.signals import SignalSet, grid_coordinates
from metasparse.data.transforms import ResizeShortCrop, parse_transform
from metasparse.errors import DataError

__all__ = [
    "DEFAULT_SAMPLES",
    "SAMPLE_FILES",
    "SAMPLE_PHOTOS",
    "expand_inputs",
    "sample_dir",
    "sample_images",
    "sample_names",
    "sample_signal_set",
    "write_sample_images",
]

SAMPLE_FILES = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "motorcycle": "motorcycle_left.png",
    "immunohistochemistry": "ihc.png",
    "retina": "retina.jpg",
    "motorcycle_right": "motorcycle_right.png",
}
DEFAULT_SAMPLES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "motorcycle",
    "immunohistochemistry",
    "retina",
)


def sample_dir() -> Path:
    """The data folder inside the installed scikit-image package."""
    try:
        import skimage
    except ImportError:  # pragma: no cover - scikit-image is a dependency
        raise DataError(
            "the sample images come with scikit-image; install it (pip install scikit-image)"
        ) from None
    return Path(os.path.dirname(skimage.__file__)) / "data"


def sample_names(available_only: bool = True) -> list[str]:
    """Names of the sample photos (by default only those present in the installed package)."""
    folder = sample_dir()
    return [n for n in SAMPLE_FILES if not available_only or (folder / SAMPLE_FILES[n]).is_file()]


def _resolve(names: str | Sequence[str] | None) -> list[str]:
    if names is None:
        return [n for n in DEFAULT_SAMPLES if (sample_dir() / SAMPLE_FILES[n]).is_file()]
    if isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [n for n in names if n not in SAMPLE_FILES]
    if unknown:
        raise DataError(f"unknown sample image(s) {', '.join(unknown)}; available: {', '.join(SAMPLE_FILES)}")
    return names


def _path(name: str) -> Path:
    p = sample_dir() / SAMPLE_FILES[name]
    if not p.is_file():
        raise DataError(
            f"sample image {name!r} is not shipped with the installed scikit-image ({p} is missing)"
        )
    return p


def sample_images(names: str | Sequence[str] | None = None, channels: int = 3) -> list[np.ndarray]:
    """The sample photos at their own sizes, as uint8 ``(H, W, channels)`` arrays.

    ``names``: one name, a list, or None for ``DEFAULT_SAMPLES`` (those that are installed).
    """
    return [load_image(_path(n), channels=channels) for n in _resolve(names)]


def sample_signal_set(
    size: int | tuple[int, int] = 64,
    names: str | Sequence[str] | None = None,
    channels: int = 3,
    transform=None,
) -> SignalSet:
    """The sample photos as one :class:`SignalSet` of ``size x size`` images.

    Each photo's short side is resized to ``size`` and the centre cropped (``size`` may be an
    (height, width) pair; the short side then goes to the larger of the two). Pass
    ``transform`` (a transform or spec string) to use another one instead.
    """
    if transform is None:
        crop = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
        tf = ResizeShortCrop(short=max(crop), crop=crop)
    else:
        tf = parse_transform(transform)
    chosen = _resolve(names)
    arrays = [load_image(_path(n), transform=tf, channels=channels) for n in chosen]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise DataError(f"the transform gives the sample photos different sizes {sorted(shapes)}")
    values = torch.from_numpy(np.stack(arrays))
    coords = grid_coordinates(tuple(values.shape[1:3]))
    return SignalSet(values=values, coords=coords, scale=1.0 / 255.0, names=chosen, modality="image")


def write_sample_images(
    folder: str | os.PathLike,
    names: str | Sequence[str] | None = None,
    transform=None,
    ext: str = ".png",
) -> list[Path]:
    """Write the sample photos into ``folder`` as ``<name>.png`` (created if needed).

    ``transform`` (optional) is applied first, e.g. ``"resize:128"`` for a small, fast set.
    Returns the written paths in order.
    """
    out = Path(folder)
    tf = parse_transform(transform)
    paths = []
    for n in _resolve(names):
        img = load_image(_path(n), transform=tf)
        paths.append(save_image(out / f"{n}{ext}", img))
    return paths


# The photos ``samples`` stands for on the codec's command line.
SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def expand_inputs(paths: Sequence[Path]) -> list[Path]:
    """``samples`` (unless a file of that name exists) stands for a few photos that scikit-image installs
    (no download)."""
    expanded: list[Path] = []
    for p in paths:
        if str(p) == "samples" and not p.exists():
            photos = [sample_dir() / SAMPLE_FILES[name] for name in SAMPLE_PHOTOS]
            expanded += [photo for photo in photos if photo.is_file()]
        else:
            expanded.append(p)
    return expanded
