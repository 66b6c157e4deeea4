"""The ``image`` modality: pictures, (x, y) -> RGB or grey, reported by PSNR."""

from __future__ import annotations

from pathlib import Path

import torch

from metasparse.data import images, samples, transforms
from metasparse.data.images import save_image
from metasparse.data.signals import SignalSet, grid_coordinates
from metasparse.errors import DataError
from metasparse.modalities.base import Modality, register_modality
from metasparse.viz.grids import image_grid

__all__ = ["load_image_signals"]


def load_image_signals(config) -> SignalSet:
    """A folder, file, ``.npz`` of images, or ``samples`` (the photos scikit-image installs)."""
    if config.path == "samples":
        return samples.sample_signal_set(size=64) if config.transform is None else _samples_with(config)
    return images.load_images(config.sources, transform=config.transform, limit=config.limit, split=config.split)


def _samples_with(config) -> SignalSet:
    t = transforms.parse_transform(config.transform)
    arrays = [t(a) for a in samples.sample_images()]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise DataError(f"transform {config.transform!r} leaves the sample photos with different sizes {shapes}")
    values = torch.stack([torch.from_numpy(a.copy()) for a in arrays])
    return SignalSet(values, grid_coordinates(values.shape[1:3]), 1 / 255, [f"sample{i}" for i in range(len(arrays))])


def _save_image_grid(signals: SignalSet, reconstructions: torch.Tensor, path: Path) -> list[Path]:
    save_image(path, image_grid(signals.targets(), reconstructions.cpu(), signals.grid_shape))
    return [Path(path)]


register_modality(Modality(
    "image", "pictures: (x, y) -> RGB or grey, PSNR", in_dim=2, out_dim=3, load=load_image_signals,
    save_reconstructions=_save_image_grid, tiled=True,
))
