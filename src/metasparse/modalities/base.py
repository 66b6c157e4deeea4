"""What makes a kind of signal a *modality*: a loader, metrics beyond PSNR, and pictures.

Everything else — coordinates in, values out, MSE loss on targets in [0, 1], meta-learning,
test-time fitting, pruning — is shared, so a modality is only

* ``load(DataConfig) -> SignalSet``: coordinates (``*grid, in_dim``), values (``N, *grid, out_dim``)
  and the scale that maps stored values to targets in [0, 1];
* ``metrics(signals, reconstructions) -> {name: per-signal values}``: what to report besides the
  PSNR that every evaluation reports (voxel accuracy and IoU, Chamfer distance, ...);
* ``save_reconstructions(signals, reconstructions, path) -> files``: a picture a person can look
  at (and meshes, for shapes) of originals next to fits;
* ``augmentations``: loader options that multiply a training set (random poses, rotations) and are
  dropped when a single signal is loaded to be compressed.

``metasparse.modalities.image`` registers ``image``; ``metasparse.modalities.grids`` registers ``voxels``,
``sdf3d``, ``sphere`` and ``sdf2d``. ``metasparse.modalities`` imports both, so importing any module of the
package fills :data:`MODALITIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metasparse.data.signals import SignalSet
from metasparse.utils.registry import Registry

__all__ = ["MODALITIES", "Modality", "available_modalities", "get_modality", "register_modality", "split_modality_path"]


@dataclass(frozen=True)
class Modality:
    name: str
    description: str = ""
    in_dim: int = 2
    out_dim: int = 3
    load: Callable | None = None  # (DataConfig) -> SignalSet
    metrics: Callable[[SignalSet, torch.Tensor], dict[str, np.ndarray]] | None = None
    save_reconstructions: Callable[[SignalSet, torch.Tensor, Path], list[Path]] | None = None
    augmentations: tuple[str, ...] = ()
    # Signals cut into patches of one network each (images), rather than one network per whole grid.
    tiled: bool = False
    # 3D shapes whose level-0.5 surface is written as a mesh beside the decoded values.
    surface: bool = False

    def without_augmentations(self, transform: str | None) -> str | None:
        """``transform`` (``key=value,...``) without the options that make extra training signals."""
        if not transform or not self.augmentations:
            return transform
        kept = [item for item in transform.split(",") if item.split("=", 1)[0].strip() not in self.augmentations]
        return ",".join(kept) or None


# name → Modality; filled by the modules that ``metasparse.modalities`` imports (image, grids).
MODALITIES: Registry[Modality] = Registry("modality")


def register_modality(modality: Modality) -> Modality:
    """Add ``modality`` under its name: ``data.modality=NAME`` then works in every command."""
    return MODALITIES.add(modality.name, modality)


def get_modality(name: str) -> Modality:
    """The registered modality, or a plain one (PSNR only, no pictures) for an unknown name."""
    return MODALITIES[name] if name in MODALITIES else Modality(name)


def available_modalities() -> list[str]:
    return sorted(MODALITIES)


def split_modality_path(data: str) -> tuple[str, str]:
    """``"sdf2d:synthetic"`` → ``("sdf2d", "synthetic")``; anything else is an image path.

    For commands that take data as one string (``metasparse experiment --data``).
    """
    head, sep, rest = data.partition(":")
    if sep and head != "image" and head in MODALITIES:
        return head, rest
    return "image", data
