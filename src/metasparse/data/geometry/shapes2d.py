"""2D signed distance images, made deterministically from shapes.

Two sources, both on the ``linspace(-1, 1)`` grid the network sees (``grid_coordinates``):

* :func:`synthetic_sdfs` — random unions of 1-4 circles, rotated boxes and convex polygons, each
  drawn from a generator seeded by (seed, signal index), so signal ``i`` is the same whatever the
  count. Each primitive's SDF is analytic (exact); the union is their minimum, exact outside the
  shapes and a close lower bound of the depth inside where primitives overlap.
* :func:`silhouette_sdf` — the silhouette of a posed mesh seen along its third axis, rasterised on
  a grid ``supersample`` times finer, turned into a signed distance by two Euclidean distance
  transforms and read back at the coarse grid points (accurate to about ``1/supersample`` pixel).

Distances are in grid units (the grid spans 2); negative inside.
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_sdf", "circle_sdf", "polygon_sdf", "random_scene_sdf", "silhouette_sdf", "synthetic_sdfs"]


def circle_sdf(p: np.ndarray, centre, radius: float) -> np.ndarray:
    return np.linalg.norm(p - np.asarray(centre), axis=-1) - radius


def box_sdf(p: np.ndarray, centre, half_sizes, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    d = p - np.asarray(centre)
    local = np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)
    q = np.abs(local) - np.asarray(half_sizes)
    return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(axis=-1), 0.0)


def polygon_sdf(p: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Exact SDF of a simple polygon (after Inigo Quilez's sdPolygon): nearest edge + crossing parity."""
    v = np.asarray(vertices, dtype=np.float64)
    d2 = np.full(p.shape[:-1], np.inf)
    sign = np.ones(p.shape[:-1])
    for i in range(len(v)):
        vi, vj = v[i], v[i - 1]
        e, w = vj - vi, p - vi
        t = np.clip((w @ e) / (e @ e), 0.0, 1.0)
        d2 = np.minimum(d2, ((w - t[..., None] * e) ** 2).sum(axis=-1))
        c = (p[..., 1] >= vi[1], p[..., 1] < vj[1], e[0] * w[..., 1] > e[1] * w[..., 0])
        sign = np.where((c[0] & c[1] & c[2]) | (~c[0] & ~c[1] & ~c[2]), -sign, sign)
    return sign * np.sqrt(d2)


def random_scene_sdf(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sdf = np.full(p.shape[:-1], np.inf)
    for _ in range(int(rng.integers(1, 5))):
        kind = rng.integers(3)
        centre = rng.uniform(-0.55, 0.55, 2)
        if kind == 0:
            d = circle_sdf(p, centre, rng.uniform(0.12, 0.4))
        elif kind == 1:
            d = box_sdf(p, centre, rng.uniform(0.08, 0.4, 2), rng.uniform(0, np.pi))
        else:  # a convex polygon: sorted random angles on a circle
            n = int(rng.integers(3, 8))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            r = rng.uniform(0.15, 0.45)
            d = polygon_sdf(p, centre + r * np.stack([np.cos(ang), np.sin(ang)], axis=1))
        sdf = np.minimum(sdf, d)
    return sdf


def synthetic_sdfs(count: int, size: int, seed: int, start: int = 0) -> np.ndarray:
    """Signals ``start .. start+count-1`` of the stream ``seed``: float (count, size, size)."""
    g = np.linspace(-1.0, 1.0, int(size))
    p = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1)
    return np.stack([random_scene_sdf(p, np.random.default_rng([seed, start + i])) for i in range(count)])


def silhouette_sdf(vertices: np.ndarray, faces: np.ndarray, size: int, supersample: int = 8) -> np.ndarray:
    """SDF of the xy-projection of a triangle mesh (already posed in the unit cube): (size, size)."""
    from scipy.ndimage import distance_transform_edt

    from metasparse.data.geometry.meshes import column_hits

    n = (int(size) - 1) * supersample + 1  # contains every coarse grid point
    g = np.linspace(-1.0, 1.0, n)
    mask = np.zeros((n, n), dtype=bool)
    for _, i, j, _, _ in column_hits(vertices[:, :2], faces, g, g):
        mask[i, j] = True
    if mask.all() or not mask.any():
        return np.full((size, size), -1.0 if mask.all() else 1.0)
    pixel = 2.0 / (n - 1)
    # Pixel centres: the boundary lies half a pixel from the last inside / first outside pixel.
    sdf = np.where(mask, -(distance_transform_edt(mask) - 0.5), distance_transform_edt(~mask) - 0.5) * pixel
    return sdf[::supersample, ::supersample]
