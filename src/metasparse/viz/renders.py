"""Pictures of non-image signals (matplotlib, no display needed): shapes, slices, world maps, 2D SDFs.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so nothing changes the
process-wide backend and nothing is left open.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["draw_mesh", "save_sdf2d_picture", "save_shape_picture", "save_world_maps"]

_VIEW = (25.0, -50.0)  # elevation, azimuth in degrees: a three-quarter view


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def draw_mesh(ax, vertices: np.ndarray | None, faces: np.ndarray | None, title: str = "") -> None:
    """Flat-shaded orthographic view of a mesh in [-1, 1]^3 (painter's algorithm: far faces first)."""
    from matplotlib.collections import PolyCollection

    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)
    if vertices is None or len(faces) == 0:
        ax.text(0, 0, "no surface", ha="center", va="center", fontsize=7)
        return
    elev, azim = np.deg2rad(_VIEW)
    rz = np.array([[np.cos(azim), -np.sin(azim), 0], [np.sin(azim), np.cos(azim), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(elev), -np.sin(elev)], [0, np.sin(elev), np.cos(elev)]])
    # OBJ files are y-up: (x, y, z) -> world (x, -z, y) (a rotation, no mirror), z up on the page.
    v = np.stack([vertices[:, 0], -vertices[:, 2], vertices[:, 1]], axis=1) @ (rx @ rz).T
    tri = v[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    light = np.array([0.4, -0.6, 0.7]) / np.linalg.norm([0.4, -0.6, 0.7])
    shade = 0.25 + 0.75 * np.abs(normal @ light)
    order = np.argsort(tri[:, :, 1].mean(axis=1))[::-1]  # the viewer looks along +y
    colors = np.clip(shade[order, None] * np.array([0.55, 0.7, 0.9]), 0, 1)
    ax.add_collection(PolyCollection(tri[order][:, :, [0, 2]], facecolors=colors, edgecolors="none"))


def save_shape_picture(path: Path, surfaces: list, slices: list[tuple[np.ndarray, np.ndarray]], names: list[str],
                       level: float, cmap: str) -> Path:
    """Columns: signals. Rows: original, reconstruction (renders), then their middle slices.

    ``surfaces``: per signal ``((verts, faces) | None, (verts, faces) | None)``.
    """
    n = len(names)
    fig = _figure(1.7 * n + 0.4, 7.0)
    axes = fig.subplots(4, n, squeeze=False)
    for k in range(n):
        for row, (surface, label) in enumerate(zip(surfaces[k], ("original", "fit"))):
            v, f = surface if surface is not None else (None, None)
            draw_mesh(axes[row, k], v, f, f"{names[k]}\n{label}" if row == 0 else label)
        for row, (img, label) in enumerate(zip(slices[k], ("original slice", "fit slice")), start=2):
            ax = axes[row, k]
            ax.imshow(img, cmap=cmap, vmin=0, vmax=1, origin="lower", extent=(-1, 1, -1, 1))
            ax.contour(img, levels=[level], colors="k", linewidths=0.6, origin="lower", extent=(-1, 1, -1, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(label, fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def save_world_maps(path: Path, targets: np.ndarray, recons: np.ndarray, names: list[str],
                    lat: np.ndarray, lon: np.ndarray) -> Path:
    """Per signal: original, fit and |error| as lat/lon maps (equirectangular)."""
    n = len(names)
    fig = _figure(12.0, 2.4 * n + 0.3)
    axes = fig.subplots(n, 3, squeeze=False)
    step = lon[1] - lon[0] if len(lon) > 1 else 360.0
    extent = (lon[0] - step / 2, lon[-1] + step / 2, lat[-1], lat[0])
    for k in range(n):
        err = np.abs(recons[k] - targets[k])
        for ax, img, title, cmap, vmax in (
            (axes[k, 0], targets[k], f"{names[k]}: original", "RdYlBu_r", 1.0),
            (axes[k, 1], recons[k], "fit", "RdYlBu_r", 1.0),
            (axes[k, 2], err, f"|error| (max {err.max():.3f})", "magma", max(float(err.max()), 1e-6)),
        ):
            im = ax.imshow(img, cmap=cmap, vmin=0, vmax=vmax, extent=extent, aspect="auto")
            ax.set_title(title, fontsize=8)
            ax.set_xlabel("longitude (°)", fontsize=7)
            ax.set_ylabel("latitude (°)", fontsize=7)
            ax.tick_params(labelsize=6)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    fig.tight_layout()
    return _save(fig, path)


def save_sdf2d_picture(path: Path, targets: np.ndarray, recons: np.ndarray, names: list[str]) -> Path:
    """Originals above, fits below; the 0.5 level (the shape's outline) drawn in black."""
    n = len(names)
    fig = _figure(1.6 * n + 0.3, 3.6)
    axes = fig.subplots(2, n, squeeze=False)
    for k in range(n):
        for row, img in enumerate((targets[k], recons[k])):
            ax = axes[row, k]
            ax.imshow(img, cmap="coolwarm", vmin=0, vmax=1)
            if img.min() < 0.5 < img.max():
                ax.contour(img, levels=[0.5], colors="k", linewidths=0.7)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(names[k] if row == 0 else "fit", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
