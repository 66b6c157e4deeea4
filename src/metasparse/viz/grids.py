"""A picture of originals above their reconstructions, for signals on a 2D grid (images)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["image_grid"]


def image_grid(targets: torch.Tensor, recons: torch.Tensor, grid_shape, count: int = 8) -> np.ndarray:
    """Originals on the top row, reconstructions below: uint8 (2H, count*W, C)."""
    n = min(count, targets.shape[0])
    t = targets[:n].reshape(n, *grid_shape, -1).clamp(0, 1)
    r = recons[:n].reshape(n, *grid_shape, -1).clamp(0, 1)
    top = torch.cat(list(t), dim=1)
    bottom = torch.cat(list(r), dim=1)
    return (torch.cat([top, bottom], dim=0) * 255 + 0.5).to(torch.uint8).cpu().numpy()
