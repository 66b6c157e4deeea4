"""Data on the sphere: equiangular latitude x longitude grids (ERA5 temperatures).

A grid of ``n_lat`` x ``n_lon`` values has latitudes ``linspace(90, -90, n_lat)`` (north first, both
poles included) and longitudes ``0, 360/n_lon, ..., 360 - 360/n_lon`` degrees, as in the ERA5 files
of Functa / COIN++. The network sees each point as a 3D unit vector (Functa, Dupont et al. 2022)

    x = cos(lat) cos(lon),   y = cos(lat) sin(lon),   z = sin(lat)

so the representation has no seam at longitude 0/360 and no singular line at the poles (every
point of a pole row maps to the same vector, as it should).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from metasparse.errors import DataError

__all__ = ["latitudes", "load_grids", "longitudes", "sphere_coordinates", "sphere_files"]


def latitudes(n_lat: int) -> np.ndarray:
    return np.linspace(90.0, -90.0, int(n_lat))


def longitudes(n_lon: int) -> np.ndarray:
    return np.arange(int(n_lon)) * (360.0 / int(n_lon))


def sphere_coordinates(n_lat: int, n_lon: int, dtype=torch.float32) -> torch.Tensor:
    """Unit vectors of the grid points: (n_lat, n_lon, 3)."""
    lat = np.deg2rad(latitudes(n_lat))[:, None]
    lon = np.deg2rad(longitudes(n_lon))[None, :]
    xyz = np.stack(np.broadcast_arrays(np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)), axis=-1)
    return torch.from_numpy(xyz).to(dtype)


def sphere_files(path: str | Path) -> list[Path]:
    """A folder → its ``*normalized*.npy`` files (ERA5 ships each grid in Kelvin too); a file → itself."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.glob("*.npy") if "normalized" in f.name and not f.name.startswith("."))
        if not files:
            raise DataError(f"no *normalized*.npy grids in {p} (values must be in [0, 1])")
        return files
    if not p.exists():
        raise DataError(f"data not found: {p}")
    if p.suffix.lower() != ".npy":
        raise DataError(f"{p}: sphere data is a .npy grid (lat x lon) or a folder of them")
    return [p]


def load_grids(files: list[Path]) -> tuple[np.ndarray, list[str]]:
    """Grids as float32 (N, n_lat, n_lon) in [0, 1], and their names (a stacked file gives several)."""
    grids, names = [], []
    for f in files:
        try:
            a = np.load(f, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise DataError(f"{f} is not a readable .npy array ({str(e).splitlines()[0]})") from None
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or min(a.shape[1:]) < 2 or not np.issubdtype(a.dtype, np.number):
            raise DataError(f"{f}: expected a numeric (lat, lon) or (N, lat, lon) grid, got shape {a.shape}")
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise DataError(f"{f} contains NaN or infinite values")
        if a.min() < 0.0 or a.max() > 1.0:
            raise DataError(f"{f}: values in [{a.min():.4g}, {a.max():.4g}]; the sphere modality expects [0, 1] "
                            "(use the *_normalized_* files)")
        grids.append(a)
        names += [f.stem] if len(a) == 1 else [f"{f.stem}/{i:04d}" for i in range(len(a))]
    shapes = {g.shape[1:] for g in grids}
    if len(shapes) != 1:
        raise DataError(f"sphere grids of different sizes: {sorted(shapes)}")
    return np.concatenate(grids), names
