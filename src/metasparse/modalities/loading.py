"""From a ``DataConfig`` to batches of targets on the device.

Two sources: a fixed ``SignalSet`` (whole images, volumes, ...) sampled by index, or random
crops of a few large photos (codec meta-training). Both draw from an explicit ``torch.Generator``
so that a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import torch

from metasparse.data import images, samples
from metasparse.data.config import DataConfig
from metasparse.data.patches import random_patches
from metasparse.data.signals import SignalSet, grid_coordinates
from metasparse.errors import DataError
from metasparse.modalities.base import MODALITIES


def load_signal_set(config: DataConfig) -> SignalSet:
    """The signals ``config`` names, loaded by its modality."""
    if config.modality not in MODALITIES or MODALITIES[config.modality].load is None:
        others = sorted(name for name, m in MODALITIES.items() if name != "image" and m.load is not None)
        raise DataError(f"unknown modality {config.modality!r}; available: image, {', '.join(others)}")
    return MODALITIES[config.modality].load(config)


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
                self.images = [torch.from_numpy(a.copy()) for a in samples.sample_images()]
                self.names = [f"sample{i}" for i in range(len(self.images))]
            else:
                self.images, self.names = images.load_image_list(
                    config.sources, transform=config.transform, limit=config.limit, split=config.split
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
            crops = random_patches(self.images, self.config.patch, batch_size, generator)
            return crops.reshape(batch_size, -1, crops.shape[-1]).to(self.device, torch.float32) * self.scale
        idx = torch.randint(len(self.signals), (batch_size,), generator=generator)
        v = self.values[idx.to(self.device)]
        return v.reshape(batch_size, -1, v.shape[-1]).to(torch.float32) * self.scale
