"""From a ``DataConfig`` to batches of targets on the device.

Two sources: a fixed ``SignalSet`` (whole images, volumes, ...) sampled by index, or random
crops of a few large photos (codec meta-training). Both draw from an explicit ``torch.Generator``
so that a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import torch

from metasparse.data.config import DataConfig
from metasparse.data.signals import SignalSet, grid_coordinates
from metasparse.errors import DataError

_LOADERS = {}


def register_loader(modality: str, loader) -> None:
    """``loader(config: DataConfig) -> SignalSet`` for a modality other than images."""
    _LOADERS[modality] = loader


def load_signal_set(config: DataConfig) -> SignalSet:
    if config.modality != "image":
        _load_modalities()
        if config.modality not in _LOADERS:
            raise DataError(f"unknown modality {config.modality!r}; available: image, {', '.join(sorted(_LOADERS))}")
        return _LOADERS[config.modality](config)
    from metasparse.data import images, samples

    if config.path == "samples":
        return samples.sample_signal_set(size=64) if config.transform is None else _samples_with(config)
    return images.load_images(config.path, transform=config.transform, limit=config.limit, split=config.split)


def _samples_with(config: DataConfig) -> SignalSet:
    from metasparse.data import samples, transforms

    t = transforms.parse_transform(config.transform)
    arrays = [t(a) for a in samples.sample_images()]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise DataError(f"transform {config.transform!r} leaves the sample photos with different sizes {shapes}")
    values = torch.stack([torch.from_numpy(a.copy()) for a in arrays])
    return SignalSet(values, grid_coordinates(values.shape[1:3]), 1 / 255, [f"sample{i}" for i in range(len(arrays))])


def _load_modalities() -> None:
    import importlib
    import importlib.util

    if importlib.util.find_spec("metasparse.modalities.grids") is not None:
        importlib.import_module("metasparse.modalities.grids")


class BatchSource:
    """Yields target batches on ``device``; ``coords`` is the shared (P, d) coordinate set.

    Whole-signal mode keeps all signals on the device and samples indices. Patch mode keeps a
    list of (possibly differently sized) photos and draws random ``patch`` x ``patch`` crops.
    """

    def __init__(self, config: DataConfig, device, signals: SignalSet | None = None):
        self.config = config
        self.device = torch.device(device)
        if config.patch:
            p = config.patch
            if signals is not None:
                self.images = [v for v in signals.values]
                self.names = list(signals.names)
            elif config.path == "samples":
                from metasparse.data import samples

                self.images = [torch.from_numpy(a.copy()) for a in samples.sample_images()]
                self.names = [f"sample{i}" for i in range(len(self.images))]
            else:
                from metasparse.data import images

                self.images, self.names = images.load_image_list(
                    config.path, transform=config.transform, limit=config.limit, split=config.split
                )
            if not self.images:
                raise DataError(f"no images found in {config.path}")
            small = [n for n, im in zip(self.names, self.images) if im.shape[0] < p or im.shape[1] < p]
            if small:
                raise DataError(f"{small[0]} is smaller than the {p}x{p} training patches")
            self.images = [im.to(self.device) for im in self.images]
            self.coords = grid_coordinates((p, p), device=self.device).reshape(-1, 2)
            self.scale = 1.0 / 255.0
            self.signals = None
            self.grid_shape = (p, p)
        else:
            self.signals = signals if signals is not None else load_signal_set(config)
            if len(self.signals) == 0:
                raise DataError(f"no signals found in {config.path}")
            self.values = self.signals.values.to(self.device)
            self.coords = self.signals.coords.to(self.device).reshape(-1, self.signals.coord_dim)
            self.scale = self.signals.scale
            self.grid_shape = self.signals.grid_shape

    def __len__(self) -> int:
        return len(self.images) if self.signals is None else len(self.signals)

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """Targets (B, P, C) as floats on the device."""
        if self.signals is None:
            from metasparse.data.patches import random_patches

            crops = random_patches(self.images, self.config.patch, batch_size, generator)
            return crops.reshape(batch_size, -1, crops.shape[-1]).to(self.device, torch.float32) * self.scale
        idx = torch.randint(len(self.signals), (batch_size,), generator=generator)
        v = self.values[idx.to(self.device)]
        return v.reshape(batch_size, -1, v.shape[-1]).to(torch.float32) * self.scale
