"""Signals as functions from coordinates to values, for any modality.

A ``SignalSet`` holds N signals sampled on one shared grid: ``values`` has shape
``(N, *grid, channels)`` and ``coords`` has shape ``(*grid, coord_dim)``. Images are
``grid = (H, W)``, ``coord_dim = 2``; volumes ``(D, H, W)`` and 3; a sphere ``(lat, lon)`` and
3 (Cartesian). Values stay in their storage dtype (uint8 for 8-bit images) until a batch is
requested, so a whole dataset lives on the device without a float copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def grid_coordinates(shape: tuple[int, ...], device=None, dtype=torch.float32) -> torch.Tensor:
    """A ``linspace(-1, 1)`` grid of shape ``(*shape, len(shape))`` (``ij`` indexing)."""
    if len(shape) == 0 or any(int(s) <= 0 for s in shape):
        raise ValueError(f"grid shape must be non-empty and positive, got {tuple(shape)}")
    axes = [torch.linspace(-1.0, 1.0, int(s), device=device, dtype=dtype) for s in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


@dataclass
class SignalSet:
    """N signals on one grid. ``values``: (N, *grid, C); ``coords``: (*grid, coord_dim).

    ``scale`` maps stored values to the model's target range: ``target = values * scale``
    (1/255 for uint8 images; 1.0 for float data that is already normalised).
    """

    values: torch.Tensor
    coords: torch.Tensor
    scale: float = 1.0
    names: list[str] = field(default_factory=list)
    modality: str = "image"

    def __post_init__(self) -> None:
        grid = tuple(self.coords.shape[:-1])
        if self.values.dim() != len(grid) + 2 or tuple(self.values.shape[1:-1]) != grid:
            raise ValueError(
                f"values of shape {tuple(self.values.shape)} do not match the coordinate grid {grid}"
            )
        if self.names and len(self.names) != len(self):
            raise ValueError(f"{len(self.names)} names for {len(self)} signals")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(self.coords.shape[:-1])

    @property
    def channels(self) -> int:
        return int(self.values.shape[-1])

    @property
    def coord_dim(self) -> int:
        return int(self.coords.shape[-1])

    @property
    def num_points(self) -> int:
        n = 1
        for s in self.grid_shape:
            n *= s
        return n

    @property
    def device(self) -> torch.device:
        return self.values.device

    def flat_coords(self) -> torch.Tensor:
        """Coordinates as (P, coord_dim)."""
        return self.coords.reshape(-1, self.coord_dim)

    def targets(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Float targets of the selected signals as (B, P, C), scaled to the model's range."""
        v = self.values if index is None else self.values[index]
        return v.reshape(v.shape[0], -1, self.channels).to(self.coords.dtype) * self.scale

    def to(self, device) -> SignalSet:
        return SignalSet(
            self.values.to(device), self.coords.to(device), self.scale, list(self.names), self.modality
        )

    def subset(self, index) -> SignalSet:
        if isinstance(index, slice):
            idx = list(range(len(self)))[index]
        else:
            idx = [int(i) for i in torch.as_tensor(index).flatten().tolist()]
        names = [self.names[i] for i in idx] if self.names else []
        return SignalSet(self.values[idx], self.coords, self.scale, names, self.modality)

    def unflatten(self, flat: torch.Tensor) -> torch.Tensor:
        """(B, P, C) model outputs back to (B, *grid, C)."""
        return flat.reshape(flat.shape[0], *self.grid_shape, self.channels)
