"""Image quality metrics on a common [0, 1] scale: PSNR and MS-SSIM.

Inputs may be numpy arrays or torch tensors, ``uint8`` (divided by 255) or floating point
(taken to be in [0, 1] already). For MS-SSIM the channel axis matters: by default numpy
arrays are channels-last ``(H, W)``, ``(H, W, C)`` or ``(N, H, W, C)``, as images are read
from files, and torch tensors are channels-first ``(C, H, W)`` or ``(N, C, H, W)``, as
networks produce them; pass ``channels_last`` to override.
"""

from __future__ import annotations

import math

import numpy as np
import pytorch_msssim
import torch
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

# The weights of Wang et al. (2003) for 5 scales, as used by pytorch_msssim.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
DEFAULT_WINDOW = 11


def _to_unit_float(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """float64 tensor on [0, 1]: uint8 is divided by 255, floats are taken as they are."""
    # np.array copies, so read-only arrays (as Pillow returns them) are fine.
    tensor = image.detach().cpu() if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image))
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float64) / 255.0
    if not tensor.is_floating_point():
        raise ValueError(f"images must be uint8 or floating point in [0, 1], got {tensor.dtype}")
    return tensor.to(torch.float64)


def _check_same_shape(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.numel() == 0:
        raise ValueError("images are empty")


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of [0, 1] data: -10 log10(MSE), element-wise; an MSE below 1e-12 counts as 1e-12
    (120 dB), so a perfect fit gives a finite number that averages."""
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


def psnr_uint8(decoded: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per image of uint8-valued tensors ``(N, ...)`` (any dtype holding 0..255), as a PNG
    or JPEG decoder gives them; the MSE is taken in float64 on the [0, 1] scale."""
    if decoded.shape != original.shape:
        raise ValueError(f"images differ in shape: {tuple(decoded.shape)} vs {tuple(original.shape)}")
    mse = ((decoded.double() - original.double()) / 255.0).pow(2).flatten(1).mean(dim=1)
    return psnr_from_mse(mse)


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB, ``-10 log10(MSE)`` on [0, 1] data; ``inf`` if equal.

    The MSE is over every element (all pixels and channels, and all images of a batch); for a
    per-image average PSNR call this once per image.
    """
    x, y = _to_unit_float(a), _to_unit_float(b)
    _check_same_shape(x, y)
    mse = float(torch.mean((x - y) ** 2))
    # Not psnr_from_mse: its 1e-12 floor would cap near-lossless comparisons of large images at 120 dB.
    return math.inf if mse == 0.0 else -10.0 * math.log10(mse)


def _to_nchw(image: torch.Tensor, channels_last: bool) -> torch.Tensor:
    if image.dim() == 2:
        return image[None, None]
    if image.dim() == 3:
        return image.permute(2, 0, 1)[None] if channels_last else image[None]
    if image.dim() == 4:
        return image.permute(0, 3, 1, 2) if channels_last else image
    raise ValueError(f"images must have 2 to 4 dimensions, got shape {tuple(image.shape)}")


def ms_ssim_scales(smaller_side: int, window: int = DEFAULT_WINDOW) -> int:
    """How many scales (1..5) MS-SSIM can use: the coarsest one, after halving the image
    ``scales - 1`` times, must still be larger than the window."""
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and smaller_side > (window - 1) * 2**scales:
        scales += 1
    return scales


def _ms_ssim_few_scales(x: torch.Tensor, y: torch.Tensor, scales: int, window: int) -> torch.Tensor:
    """MS-SSIM over ``scales`` scales (1..5); with fewer than 5 the first weights are
    renormalised to sum to 1 (so 1 scale is plain SSIM).

    The same computation as ``pytorch_msssim.ms_ssim``, which insists on all 5 scales (and
    whose ``ssim`` cannot take a side of 1 pixel); it is built from that package's own
    per-scale SSIM so that both agree exactly at 5 scales.
    """
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=x.dtype)
    if scales < len(MS_SSIM_WEIGHTS):
        weights = weights / weights.sum()
    kernel = _fspecial_gauss_1d(window, 1.5).repeat([x.shape[1], 1, 1, 1])
    contrast_structure = []
    for scale in range(scales):
        ssim_per_channel, cs = _ssim(x, y, data_range=1.0, win=kernel, size_average=False)
        if scale < scales - 1:
            contrast_structure.append(torch.relu(cs))
            padding = [side % 2 for side in x.shape[2:]]
            x = torch.nn.functional.avg_pool2d(x, kernel_size=2, padding=padding)
            y = torch.nn.functional.avg_pool2d(y, kernel_size=2, padding=padding)
    terms = torch.stack(contrast_structure + [torch.relu(ssim_per_channel)], dim=0)
    return torch.prod(terms ** weights.view(-1, 1, 1), dim=0).mean()


def ms_ssim(
    a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, channels_last: bool | None = None
) -> float:
    """Multi-scale SSIM (Wang et al. 2003) on [0, 1] data, averaged over channels and images.

    Full 5-scale MS-SSIM with the 11-pixel Gaussian window needs a shorter side above 160
    pixels. Smaller images get the largest number of scales that fits (a shorter side of
    21..40 pixels gives 2 scales, 41..80 gives 3, 81..160 gives 4), with the standard weights
    of those scales renormalised to sum to 1. Below 21 pixels only one scale is left, which
    is plain SSIM; below 11 pixels the window also shrinks to the largest odd size that fits.
    Values from different image sizes are therefore not strictly comparable.
    """
    x, y = _to_unit_float(a), _to_unit_float(b)
    _check_same_shape(x, y)
    if channels_last is None:
        channels_last = not isinstance(a, torch.Tensor)
    # float32 is ample for SSIM statistics and several times faster than float64 convolutions.
    x = _to_nchw(x, channels_last).to(torch.float32)
    y = _to_nchw(y, channels_last).to(torch.float32)
    smaller_side = min(x.shape[-2:])
    scales = ms_ssim_scales(smaller_side)
    if scales == len(MS_SSIM_WEIGHTS):
        return float(pytorch_msssim.ms_ssim(x, y, data_range=1.0, win_size=DEFAULT_WINDOW))
    # An odd window no larger than the image (smoothing is skipped along shorter sides).
    window = min(DEFAULT_WINDOW, smaller_side if smaller_side % 2 else smaller_side - 1)
    return float(_ms_ssim_few_scales(x, y, scales, window))
