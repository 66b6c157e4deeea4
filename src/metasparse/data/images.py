"""Loading and saving images.

:func:`load_images` turns a folder, a list of files, a single file, or an ``.npz``/``.npy``
array of images into a :class:`~metasparse.data.signals.SignalSet` holding one uint8 tensor
``(N, H, W, C)``. Files are decoded once, in parallel threads (Pillow releases the GIL while
decoding and resizing), and the transform is applied right after decoding, so training never
touches a file or a decoder.

Inputs
    * a folder: every file with an image extension (png, jpg, jpeg, bmp, tif, tiff, webp, in any
      letter case), searched recursively (class subfolders such as Imagenette's ``<wnid>/`` are
      included), sorted by relative path. Files and folders whose names start with "." are
      skipped. Names are paths relative to the folder (``"n01440764/x.JPEG"``).
    * a list of files (each loaded in the given order; folders in the list are expanded as
      above) or a single file. Names are the file names. A file with another extension is still
      tried with Pillow (gif, ppm, ...).
    * an ``.npz`` with an ``images`` array ``(N, H, W, C)`` or ``(N, H, W)`` of uint8 (the CIFAR-10
      format), or an ``.npy`` holding such an array. Names are ``"<stem>/<index:06d>"``, so
      ``range:`` splits count from 0.

Odd inputs (the policy, applied before the transform)
    * greyscale (1-bit, 8-bit) → the grey value replicated to 3 channels, or kept as 1 channel
      with ``channels=1``; colour with ``channels=1`` → ITU-R 601-2 luma (Pillow's ``"L"``).
    * an alpha channel (RGBA, LA, palette with transparency) → composited on **white**
      (what a viewer shows on a white page); the alpha channel itself is not kept.
    * palette images → RGB; CMYK, YCbCr, LAB, HSV → RGB through Pillow.
    * 16-bit images are reduced to 8 bits and ``scale`` stays 1/255: 16-bit greyscale is rounded
      (``round(v / 257)``, so 65535 → 255); Pillow itself reads 16-bit-per-channel colour PNGs as
      8-bit by keeping the high byte (``v >> 8``, at most one level below rounding).
    * 32-bit integer images with values in 0..65535 are treated as 16-bit; float images are
      rejected.
    * the EXIF orientation tag is applied (photos come out upright, as viewers show them).
    * animated or multi-page files: the first frame.
    * images smaller than 2x2 are rejected.

Every problem with an input (missing path, empty folder, corrupt or truncated file, file that
is not an image, too small image, images of different sizes without a transform that unifies
them) raises :class:`~metasparse.errors.DataError` with a one-line message naming the file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from metasparse.data.signals import SignalSet, grid_coordinates
from metasparse.data.splits import Split, parse_split
from metasparse.data.transforms import Identity, Transform, parse_transform
from metasparse.errors import DataError
from metasparse.utils.fileio import write_atomic

__all__ = [
    "ARRAY_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "list_image_files",
    "load_image",
    "load_image_list",
    "load_images",
    "read_image",
    "save_image",
    "to_uint8",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
ARRAY_EXTENSIONS = (".npz", ".npy")
MIN_SIDE = 2

PathLike = str | os.PathLike
Sources = PathLike | Sequence[PathLike]
TransformLike = str | Transform | Callable | None


# --------------------------------------------------------------------------------------------
# finding files


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _walk_images(root: Path) -> list[tuple[Path, str]]:
    """(path, relative POSIX name) of every image file under ``root``, sorted by name."""
    found: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not _is_hidden(d)]
        for fn in filenames:
            if _is_hidden(fn) or os.path.splitext(fn)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            path = Path(dirpath) / fn
            found.append((path, path.relative_to(root).as_posix()))
    found.sort(key=lambda t: t[1])
    return found


def list_image_files(path_or_paths: Sources) -> tuple[list[Path], list[str]]:
    """The image files a source stands for, and their names (see the module docstring).

    Raises :class:`DataError` for a missing path or a folder without image files.
    """
    single = isinstance(path_or_paths, (str, os.PathLike))
    items = [path_or_paths] if single else list(path_or_paths)
    if not items:
        raise DataError("no input files given")
    files: list[Path] = []
    names: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = _walk_images(p)
            if not found:
                exts = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
                raise DataError(f"{p}: no image files ({exts}) in this folder or its subfolders")
            files.extend(f for f, _ in found)
            names.extend(n for _, n in found)
        elif p.is_file():
            if p.suffix.lower() in ARRAY_EXTENSIONS:
                raise DataError(f"{p}: pass an .npz/.npy array on its own, not in a list of files")
            files.append(p)
            names.append(p.name)
        elif p.exists():
            raise DataError(f"{p}: not a regular file or folder")
        else:
            raise DataError(f"{p}: no such file or folder")
    return files, names


# --------------------------------------------------------------------------------------------
# decoding and the odd-input policy


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, C+1) uint8 with alpha last → (H, W, C) composited on white, rounded."""
    color = rgba[..., :-1].astype(np.uint32)
    alpha = rgba[..., -1:].astype(np.uint32)
    out = (color * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def _pil_to_array(im: Image.Image) -> np.ndarray:
    """A decoded PIL image as uint8 (H, W) greyscale or (H, W, 3) RGB, following the policy."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im)
        if mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):
            raise DataError("32-bit integer image with values outside 0..65535 is not supported")
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if mode == "F":
        raise DataError("floating-point images are not supported; convert the image to 8 or 16 bits")
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"))
    if mode in ("LA", "La", "PA") or (mode == "P" and "transparency" in im.info):
        if mode == "LA":
            return _composite_on_white(np.asarray(im))
        return _composite_on_white(np.asarray(im.convert("RGBA")))
    if mode in ("RGBA", "RGBa"):
        return _composite_on_white(np.asarray(im.convert("RGBA")))
    if mode == "RGB":
        return np.asarray(im)
    return np.asarray(im.convert("RGB"))


def _set_channels(arr: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (H, W) or (H, W, 1|3|4) → (H, W, channels) by the odd-input policy."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    c = arr.shape[2]
    if c == 4:
        arr, c = _composite_on_white(arr), 3
    elif c == 2:
        arr, c = _composite_on_white(arr), 1
    if c == channels:
        return arr
    if c == 1 and channels == 3:
        return np.repeat(arr, 3, axis=2)
    if c == 3 and channels == 1:
        return np.asarray(Image.fromarray(np.ascontiguousarray(arr)).convert("L"))[:, :, None]
    raise DataError(f"cannot make a {channels}-channel image from {c} channels")


def _check_channels(channels: int) -> int:
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    return int(channels)


def _check_size(arr: np.ndarray, what: str) -> None:
    h, w = arr.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise DataError(
            f"{what}: image is too small ({w}x{h}); images must be at least {MIN_SIDE}x{MIN_SIDE}"
        )


def _decode(path: Path, channels: int) -> np.ndarray:
    """Decode one file into uint8 (H, W, channels); every failure is a DataError naming it."""
    try:
        with Image.open(path) as im:
            im.load()
            orientation = im.getexif().get(0x0112, 1)
            if orientation != 1:
                im = ImageOps.exif_transpose(im)
            arr = _pil_to_array(im)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    except UnidentifiedImageError:
        if path.is_file() and path.stat().st_size == 0:
            raise DataError(f"{path}: empty file (0 bytes)") from None
        raise DataError(f"{path}: not an image file that Pillow can read (or a corrupt header)") from None
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: image too large ({e})") from None
    except Exception as e:  # noqa: BLE001 - corrupt data raises OSError, SyntaxError, struct.error, ...
        raise DataError(f"{path}: corrupt or truncated image ({type(e).__name__}: {e})") from None
    _check_size(arr, str(path))
    return _set_channels(arr, channels)


def _finish(arr: np.ndarray, transform, what: str, channels: int) -> np.ndarray:
    """Apply the transform to a policy-normalised image and check what comes back."""
    if isinstance(transform, Identity):
        return arr
    try:
        out = transform(arr)
    except DataError as e:
        raise DataError(f"{what}: {e}") from None
    if isinstance(out, torch.Tensor):
        out = out.numpy()
    out = np.asarray(out)
    if out.dtype != np.uint8:
        raise DataError(f"{what}: the transform returned dtype {out.dtype}, expected uint8")
    if out.ndim == 2:
        out = out[:, :, None]
    if out.ndim != 3:
        raise DataError(f"{what}: the transform returned shape {out.shape}, expected (H, W, C)")
    _check_size(out, f"{what} after the transform")
    if out.shape[2] != channels:
        out = _set_channels(out, channels)
    return out


def load_image(path: PathLike, transform: TransformLike = None, channels: int = 3) -> np.ndarray:
    """One image file as a uint8 ``(H, W, channels)`` numpy array (policy in the module docstring)."""
    channels = _check_channels(channels)
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{p}: is a folder, expected an image file")
    if not p.exists():
        raise DataError(f"{p}: no such file")
    return _writable(_finish(_decode(p, channels), parse_transform(transform), str(p), channels))


def read_image(path: PathLike) -> np.ndarray:
    """uint8 (H, W, C) with C = 1 for greyscale sources and 3 otherwise (alpha composited on white)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path} is a folder; pass image files (or a shell glob such as {path}/*.png)")
    try:
        with Image.open(path) as im:
            grey = im.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
    except Exception:  # noqa: BLE001 - load_image reports the problem as a DataError
        grey = False
    return load_image(path, channels=1 if grey else 3)


def _writable(arr: np.ndarray) -> np.ndarray:
    """A contiguous array that owns writable memory (Pillow's arrays are read-only views)."""
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        return np.array(arr, order="C", copy=True)
    return arr


# --------------------------------------------------------------------------------------------
# datasets


def _default_workers(n: int) -> int:
    return max(1, min(8, os.cpu_count() or 1, n))


def _select(names: list[str], split, limit: int | None, source: str) -> list[int]:
    idx = parse_split(split).select(names) if split is not None else list(range(len(names)))
    if limit is not None:
        if int(limit) < 0:
            raise DataError(f"limit must be >= 0, got {limit}")
        idx = idx[: int(limit)]
    if not idx:
        spec = parse_split(split).spec if split is not None else "all"
        raise DataError(
            f"{source}: split {spec!r} with limit {limit} selects none of its {len(names)} images"
        )
    return idx


def _describe(path_or_paths: Sources) -> str:
    if isinstance(path_or_paths, (str, os.PathLike)):
        return str(path_or_paths)
    items = list(path_or_paths)
    return str(items[0]) if len(items) == 1 else f"{len(items)} inputs"


def _is_array_file(path_or_paths: Sources) -> bool:
    return (
        isinstance(path_or_paths, (str, os.PathLike))
        and Path(path_or_paths).suffix.lower() in ARRAY_EXTENSIONS
    )


def _load_array_file(path: Path) -> np.ndarray:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "images" not in z.files:
                    raise DataError(f"{path}: no 'images' array (arrays: {', '.join(z.files) or 'none'})")
                arr = z["images"]
        else:
            arr = np.load(path, allow_pickle=False)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - numpy raises ValueError, OSError, zipfile errors, ...
        raise DataError(f"{path}: cannot read the array file ({type(e).__name__}: {e})") from None
    if arr.dtype != np.uint8:
        raise DataError(f"{path}: images must be uint8, got {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4):
        raise DataError(f"{path}: expected images of shape (N, H, W, C) with C in 1, 3, 4, got {arr.shape}")
    if arr.shape[0] == 0:
        raise DataError(f"{path}: the images array is empty")
    return arr


def _decoded_items(
    path_or_paths: Sources, transform: TransformLike, limit, split, channels: int, workers: int | None
):
    """(names, iterator of uint8 HWC arrays, close callback) for any kind of source."""
    channels = _check_channels(channels)
    tf = parse_transform(transform)
    source = _describe(path_or_paths)
    if _is_array_file(path_or_paths):
        path = Path(path_or_paths)
        arr = _load_array_file(path)
        all_names = [f"{path.stem}/{i:06d}" for i in range(arr.shape[0])]
        idx = _select(all_names, split, limit, source)
        names = [all_names[i] for i in idx]

        def gen():
            for i, name in zip(idx, names):
                img = _set_channels(arr[i], channels)
                _check_size(img, f"{path}[{i}]")
                yield _finish(img, tf, f"{path}[{i}] ({name})", channels)

        return names, gen(), lambda: None

    files, all_names = list_image_files(path_or_paths)
    idx = _select(all_names, split, limit, source)
    files = [files[i] for i in idx]
    names = [all_names[i] for i in idx]

    def job(p: Path) -> np.ndarray:
        return _finish(_decode(p, channels), tf, str(p), channels)

    n_workers = workers if workers is not None else _default_workers(len(files))
    if n_workers <= 1 or len(files) < 4:
        return names, map(job, files), lambda: None
    pool = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="metasparse-decode")

    def close():
        pool.shutdown(wait=True, cancel_futures=True)

    return names, pool.map(job, files), close


def load_images(
    path_or_paths: Sources,
    transform: TransformLike = None,
    limit: int | None = None,
    split: str | Split | None = None,
    channels: int = 3,
    workers: int | None = None,
) -> SignalSet:
    """Decode images into a :class:`SignalSet` with uint8 values ``(N, H, W, channels)``.

    Args:
        path_or_paths: a folder, a list of files (or folders), one image file, or an
            ``.npz``/``.npy`` array of images (see the module docstring).
        transform: a :class:`~metasparse.data.transforms.Transform`, a spec string such as
            ``"resize_short_crop:200,178"``, any callable uint8 HWC → uint8 HWC, or None.
        limit: keep at most this many images (after the split).
        split: a :class:`~metasparse.data.splits.Split` or a spec string such as
            ``"celeba_train"``, ``"first:100"`` or ``"val:0.1"``, applied to the sorted names.
        channels: 3 (RGB) or 1 (greyscale).
        workers: decoding threads (default: up to 8, one per core).

    All images must have one size after the transform; otherwise a :class:`DataError` names
    two files of different sizes and asks for a transform. ``scale`` is 1/255 and ``coords``
    the ``linspace(-1, 1)`` grid of the image size.
    """
    names, arrays, close = _decoded_items(path_or_paths, transform, limit, split, channels, workers)
    out: np.ndarray | None = None
    try:
        for i, arr in enumerate(arrays):
            if out is None:
                out = np.empty((len(names), *arr.shape), dtype=np.uint8)
            elif arr.shape != out.shape[1:]:
                h0, w0 = out.shape[1:3]
                h, w = arr.shape[:2]
                tf = parse_transform(transform)
                after = f" after the transform {tf.spec!r}" if isinstance(tf, Transform) and transform else ""
                raise DataError(
                    f"images have different sizes{after}: {names[0]} is {w0}x{h0}, {names[i]} is {w}x{h} "
                    "(width x height); pass a transform that gives them one size, "
                    "e.g. 'resize_short_crop:200,178', 'center_crop:178' or 'resize:64'"
                )
            out[i] = arr
    finally:
        close()
    assert out is not None
    values = torch.from_numpy(out)
    coords = grid_coordinates(tuple(out.shape[1:3]))
    return SignalSet(values=values, coords=coords, scale=1.0 / 255.0, names=names, modality="image")


def load_image_list(
    path_or_paths: Sources,
    transform: TransformLike = None,
    limit: int | None = None,
    split: str | Split | None = None,
    channels: int = 3,
    workers: int | None = None,
) -> tuple[list[torch.Tensor], list[str]]:
    """Like :func:`load_images` but the images may differ in size: a list of uint8 ``(H, W, C)``
    tensors and their names (for random-patch training on photos of different sizes)."""
    names, arrays, close = _decoded_items(path_or_paths, transform, limit, split, channels, workers)
    try:
        images = [torch.from_numpy(_writable(a)) for a in arrays]
    finally:
        close()
    return images, names


# --------------------------------------------------------------------------------------------
# saving

def to_uint8(array) -> np.ndarray:
    """A tensor or array as uint8 ``(H, W, C)``: floats are taken as [0, 1], clipped and rounded."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    arr = np.asarray(array)
    if arr.dtype == np.uint8:
        pass
    elif np.issubdtype(arr.dtype, np.floating):
        arr = np.clip(np.nan_to_num(arr.astype(np.float64), nan=0.0), 0.0, 1.0)
        arr = np.floor(arr * 255.0 + 0.5).astype(np.uint8)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    else:
        raise DataError(f"cannot save an image of dtype {arr.dtype}: use uint8, or floats in [0, 1]")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise DataError(
            f"an image to save must be (H, W) or (H, W, C) with C in 1, 3, 4, got shape {arr.shape}"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(f"cannot save an empty image of shape {arr.shape}")
    return np.ascontiguousarray(arr)


def save_image(path: PathLike, array, **save_kwargs) -> Path:
    """Write an image atomically (encoded in memory, then published by ``write_atomic``).

    ``array``: uint8 or float-in-[0, 1] ``(H, W)`` / ``(H, W, C)`` numpy array or tensor. The
    format follows the extension (png, jpg, webp, ...); ``save_kwargs`` go to Pillow (e.g.
    ``quality=90``). The folder is created if needed. Returns the path.
    """
    p = Path(path)
    arr = to_uint8(array)
    fmt = Image.registered_extensions().get(p.suffix.lower())
    if fmt is None:
        raise DataError(f"{p}: unknown image extension {p.suffix!r}; use .png, .jpg, .webp, ...")
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    if fmt == "JPEG" and img.mode == "RGBA":
        raise DataError(f"{p}: JPEG cannot store an alpha channel; save as .png or drop the alpha")
    buffer = io.BytesIO()
    try:
        img.save(buffer, format=fmt, **save_kwargs)
        p.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(p, buffer.getvalue())
    except (OSError, ValueError) as e:
        raise DataError(f"{p}: cannot write the image ({type(e).__name__}: {e})") from None
    return p
