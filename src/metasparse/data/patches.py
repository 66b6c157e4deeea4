"""Cutting images into patches (for the codec) and sampling random patches (for meta-training).

Large images are coded as a raster-ordered grid of ``patch x patch`` tiles (32x32 in MSCN and
COIN++: a 768x512 image is 24 x 16 = 384 patches). An image whose sides are not multiples of the
patch size is padded at the bottom and right by **edge replication** (the last row / column is
repeated) and cropped back after decoding. Zero padding would put a hard edge inside the last
patches, high-frequency content that the network must spend parameters and bits on; a
replicated edge is flat in the padded direction, cheap to fit, and the padded pixels are
discarded anyway. (Reflection would also avoid the edge, but cannot pad more than ``side - 1``
pixels, e.g. a 1x1 image.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from metasparse.data.tiling import patch_grid

__all__ = ["from_patches", "pad_to_multiple", "random_patches", "to_patches"]


def _as_hwc(image) -> torch.Tensor:
    t = torch.as_tensor(image) if not isinstance(image, torch.Tensor) else image
    if t.dim() != 3:
        raise ValueError(f"expected an (H, W, C) image, got shape {tuple(t.shape)}")
    if t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"cannot cut an empty image of shape {tuple(t.shape)} into patches")
    return t


def _check_patch(patch: int) -> int:
    if int(patch) < 1:
        raise ValueError(f"patch size must be >= 1, got {patch}")
    return int(patch)


def pad_to_multiple(image, patch: int = 32) -> torch.Tensor:
    """Pad an (H, W, C) image at the bottom and right by edge replication to multiples of ``patch``."""
    t = _as_hwc(image)
    h, w = t.shape[:2]
    _, (ph, pw) = patch_grid(h, w, patch)
    if (ph, pw) == (h, w):
        return t
    rows = torch.arange(ph, device=t.device).clamp_(max=h - 1)
    cols = torch.arange(pw, device=t.device).clamp_(max=w - 1)
    return t[rows][:, cols]


def to_patches(image, patch: int = 32) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
    """Cut an (H, W, C) image into patches.

    Returns ``(patches, grid, padded_size)``: ``patches`` is ``(rows * cols, patch, patch, C)``
    in raster order (left to right, then top to bottom), ``grid = (rows, cols)`` and
    ``padded_size = (rows * patch, cols * patch)``. The dtype is kept.
    """
    patch = _check_patch(patch)
    padded = pad_to_multiple(image, patch)
    (rows, cols), padded_size = patch_grid(*padded.shape[:2], patch)
    c = padded.shape[2]
    patches = padded.reshape(rows, patch, cols, patch, c).permute(0, 2, 1, 3, 4).reshape(-1, patch, patch, c)
    return patches.contiguous(), (rows, cols), padded_size


def from_patches(patches, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Reassemble :func:`to_patches` output into an (H, W, C) image of ``size = (H, W)``."""
    p = torch.as_tensor(patches) if not isinstance(patches, torch.Tensor) else patches
    rows, cols = (int(g) for g in grid)
    h, w = (int(s) for s in size)
    if p.dim() != 4 or p.shape[1] != p.shape[2]:
        raise ValueError(f"expected patches of shape (N, P, P, C), got {tuple(p.shape)}")
    if p.shape[0] != rows * cols:
        raise ValueError(f"{p.shape[0]} patches do not fill a {rows}x{cols} grid")
    patch = p.shape[1]
    if not (0 < h <= rows * patch and 0 < w <= cols * patch):
        raise ValueError(f"size {h}x{w} does not fit a {rows}x{cols} grid of {patch}-pixel patches")
    c = p.shape[3]
    full = (
        p.reshape(rows, cols, patch, patch, c).permute(0, 2, 1, 3, 4).reshape(rows * patch, cols * patch, c)
    )
    return full[:h, :w].contiguous()


def random_patches(
    images: torch.Tensor | Sequence[torch.Tensor] | np.ndarray,
    patch: int,
    count: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``count`` random ``patch x patch`` crops, as ``(count, patch, patch, C)`` in the input dtype.

    ``images`` is a tensor ``(N, H, W, C)`` of same-sized images or a list of ``(H, W, C)``
    tensors of any sizes (e.g. from :func:`~metasparse.data.images.load_image_list`). Each crop
    picks an image uniformly, then a position uniformly among those where the crop fits. An image
    smaller than ``patch`` on a side is first padded by edge replication (as the codec does).
    Positions come from ``generator`` (a CPU ``torch.Generator``), so a seeded generator gives
    the same crops every time.
    """
    patch = _check_patch(patch)
    count = int(count)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"expected images of shape (N, H, W, C), got {tuple(images.shape)}")
        stack = images
        if stack.shape[1] < patch or stack.shape[2] < patch:
            stack = torch.stack([pad_to_multiple(im, patch) for im in stack])
        n, h, w, _ = stack.shape
        if n == 0:
            raise ValueError("no images to take patches from")
        which = torch.randint(n, (count,), generator=generator)
        ys = torch.randint(h - patch + 1, (count,), generator=generator)
        xs = torch.randint(w - patch + 1, (count,), generator=generator)
        offs = torch.arange(patch)
        r = (ys[:, None] + offs)[:, :, None]
        q = (xs[:, None] + offs)[:, None, :]
        dev = stack.device
        return stack[which[:, None, None].to(dev), r.to(dev), q.to(dev)]
    imgs = [_as_hwc(im) for im in images]
    if not imgs:
        raise ValueError("no images to take patches from")
    channels = {int(im.shape[2]) for im in imgs}
    if len(channels) != 1:
        raise ValueError(f"images have different channel counts {sorted(channels)}")
    imgs = [
        im if im.shape[0] >= patch and im.shape[1] >= patch else pad_to_multiple(im, patch) for im in imgs
    ]
    which = torch.randint(len(imgs), (count,), generator=generator).tolist()
    u = torch.rand((count, 2), generator=generator, dtype=torch.float64).tolist()
    out = []
    for k, i in enumerate(which):
        im = imgs[i]
        y = min(int(u[k][0] * (im.shape[0] - patch + 1)), im.shape[0] - patch)
        x = min(int(u[k][1] * (im.shape[1] - patch + 1)), im.shape[1] - patch)
        out.append(im[y : y + patch, x : x + patch])
    if not out:
        return imgs[0].new_empty((0, patch, patch, imgs[0].shape[2]))
    return torch.stack(out)
