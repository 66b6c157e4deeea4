"""The non-image modalities, registered on import: ``voxels``, ``sdf3d``, ``sphere``, ``sdf2d``.

Each is a loader (``DataConfig -> SignalSet``), metrics and pictures (see :mod:`metasparse.modalities.base`);
training, fitting and evaluation are the image pipeline unchanged. Targets are in [0, 1] and the
loss is the usual MSE for all of them.

``data.path`` / ``--data``
    voxels, sdf3d: a folder of ``.obj`` meshes or one ``.obj`` file.
    sphere: a folder of ERA5 ``*normalized*.npy`` grids (lat x lon) or one ``.npy`` file.
    sdf2d: ``synthetic`` (random shapes with analytic SDFs) or meshes as above (their silhouettes).

``data.split`` / ``--split``
    ``train`` / ``test``: meshes by a seeded hash of the file name (``meshes_train`` = ``train:0.25``,
    ``meshes_test`` = ``val:0.25``: whole meshes are held out); sphere grids: every grid but the
    last (sorted by name) / the last one; synthetic sdf2d: two disjoint streams of shapes.
    Unset: everything. Any other split spec of :mod:`metasparse.data.splits` selects meshes or
    grids by name (``first:4``).

``data.transform`` / ``--transform``: comma-separated options, e.g. ``size=64,poses=8``
    voxels, sdf3d: ``size`` (grid side, 32), ``poses`` (per mesh: 16 for train, 4 for test, else 1;
    pose 0 is the mesh as stored, the others a uniformly random rotation and a scale in
    [``min_scale``, 1], seeded by ``seed``, mesh name and pose), ``min_scale`` (0.75), ``seed`` (0),
    ``margin`` (0.95: the shape fits in [-margin, margin]^3); sdf3d also ``trunc`` (1.0) and
    ``samples`` (surface samples for the distances, 50,000).
    sphere: ``rolls`` (longitude rotations per grid, evenly spaced: 18 for train, else 1).
    sdf2d: ``size`` (64), ``trunc`` (1.0), ``count`` (synthetic: 512 for train / 64 for test),
    ``views`` (meshes: 8 for train / 4 for test, else 1), ``supersample`` (8), ``seed`` (0).

Value encodings (what PSNR is computed on):
    voxels: occupancy in {0, 1}. sphere: the normalised temperature as stored.
    sdf3d, sdf2d: ``0.5 + clip(d, -trunc, trunc) / (2 trunc)`` with ``d`` the signed distance in
    grid units (the cube / square spans 2, negative inside): the surface is the 0.5 level.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np
import torch

from metasparse.data.config import DataConfig
from metasparse.data.geometry import meshes, shapes2d, sphere
from metasparse.data.signals import SignalSet, grid_coordinates
from metasparse.data.splits import apply_split, register_split
from metasparse.errors import DataError
from metasparse.modalities.base import Modality, register_modality
from metasparse.viz import renders as render

log = logging.getLogger("metasparse")

MESH_TEST_FRACTION = 0.25
register_split("meshes_train", f"train:{MESH_TEST_FRACTION}")
register_split("meshes_test", f"val:{MESH_TEST_FRACTION}")

PICTURE_SIGNALS = 6  # columns in a picture; meshes are written for the same signals


# ------------------------------------------------------------------------------------------ options


def parse_options(modality: str, spec: str | None, defaults: dict) -> dict:
    """``"size=64,poses=8"`` → the defaults with those values (typed like the default)."""
    opts = dict(defaults)
    for item in (spec or "").replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in defaults:
            raise DataError(f"bad {modality} option {item!r}; options: "
                            + ", ".join(f"{k}=..." for k in defaults) + " (e.g. --transform size=32)")
        kind = float if isinstance(defaults[key], float) else int
        try:
            opts[key] = kind(raw)
        except ValueError:
            raise DataError(f"{modality} option {key} expects a number, got {raw!r}") from None
    return opts


def _per_split(value: int | None, split: str | None, train: int, test: int, other: int = 1) -> int:
    if value is not None:
        if value < 1:
            raise DataError(f"expected a count of at least 1, got {value}")
        return value
    return train if split == "train" else test if split == "test" else other


def _check_size(size: int, lowest: int = 2) -> int:
    if not lowest <= size <= 512:
        raise DataError(f"grid size {size} is out of range ({lowest} .. 512)")
    return size


# ------------------------------------------------------------------------------------------ meshes


def mesh_files(path: str) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() == ".obj" and not f.name.startswith("."))
        if not files:
            raise DataError(f"no .obj meshes in {p}")
        return files
    if not p.exists():
        raise DataError(f"data not found: {p}")
    if p.suffix.lower() != ".obj":
        raise DataError(f"{p}: expected an .obj mesh or a folder of them")
    return [p]


def _select(names: list[str], split: str | None) -> list[int]:
    alias = {"train": "meshes_train", "test": "meshes_test"}
    return apply_split(alias.get(split, split), names) if split else list(range(len(names)))


def load_meshes(config: DataConfig) -> list[meshes.Mesh]:
    """The split's meshes, normalised to the cube; flat (2D) meshes are skipped: they enclose no volume."""
    files = mesh_files(config.path)
    files = [files[i] for i in _select([f.name for f in files], config.split)]
    if not files:
        raise DataError(f"the split {config.split!r} selects no mesh in {config.path}")
    out, flat = [], []
    for f in files:
        m = meshes.read_obj(f)
        extent = np.ptp(m.vertices, axis=0)
        if extent.min() <= 1e-3 * extent.max():
            flat.append(f.name)
            continue
        out.append(meshes.normalize_to_cube(m))
    if flat:
        if not out:
            raise DataError(f"{', '.join(flat)}: flat meshes enclose no volume; use them with sdf2d")
        log.warning("skipping flat meshes (no volume to voxelise): %s", ", ".join(flat))
    return out


def mesh_poses(mesh: meshes.Mesh, count: int, seed: int, min_scale: float, margin: float):
    """(name, A, b) of each pose: ``x -> A x + b``; pose 0 is the mesh as stored."""
    key = zlib.crc32(mesh.name.encode())
    for k in range(count):
        if k == 0:
            rotation, scale = np.eye(3), 1.0
        else:
            rng = np.random.default_rng([seed, key, k])
            rotation, scale = meshes.random_rotation(rng), float(rng.uniform(min_scale, 1.0))
        a, b = meshes.pose(mesh, rotation, scale, margin)
        yield f"{mesh.name}/pose{k:02d}", a, b


def _mesh_signals(config: DataConfig, modality: str, extra: dict):
    opts = parse_options(modality, config.transform,
                         {"size": 32, "poses": None, "min_scale": 0.75, "seed": 0, "margin": 0.95, **extra})
    opts["poses"] = _per_split(opts["poses"], config.split, 16, 4)
    size = _check_size(opts["size"], 4)
    if not (0 < opts["min_scale"] <= 1 and 0 < opts["margin"] <= 1):
        raise DataError("min_scale and margin must be in (0, 1]")
    jobs = [(m, name, a, b) for m in load_meshes(config)
            for name, a, b in mesh_poses(m, opts["poses"], opts["seed"], opts["min_scale"], opts["margin"])]
    if config.limit is not None:
        jobs = jobs[: config.limit]
    return jobs, (size, size, size), opts


def load_voxels(config: DataConfig) -> SignalSet:
    jobs, shape, _ = _mesh_signals(config, "voxels", {})
    values = np.stack([meshes.occupancy(m.transformed(a, b), shape) for m, _, a, b in jobs]).astype(np.uint8)
    return SignalSet(torch.from_numpy(values)[..., None], grid_coordinates(shape), 1.0,
                     [name for _, name, _, _ in jobs], "voxels")


def encode_sdf(d: np.ndarray, trunc: float) -> np.ndarray:
    return (0.5 + np.clip(d, -trunc, trunc) / (2 * trunc)).astype(np.float32)


def load_sdf3d(config: DataConfig) -> SignalSet:
    jobs, shape, opts = _mesh_signals(config, "sdf3d", {"trunc": 1.0, "samples": 50_000})
    if opts["trunc"] <= 0 or opts["samples"] < 1:
        raise DataError("sdf3d options trunc and samples must be positive")
    points = grid_coordinates(shape, dtype=torch.float64).reshape(-1, 3).numpy()
    samples: dict[str, np.ndarray] = {}
    out = []
    for m, _, a, b in jobs:
        if m.name not in samples:  # sampled once per mesh; a pose maps the samples like the vertices
            samples[m.name] = meshes.surface_samples(m, opts["samples"], seed=opts["seed"])
        inside = meshes.occupancy(m.transformed(a, b), shape)
        d = meshes.signed_distance(samples[m.name] @ a.T + b, points, inside.reshape(-1)).reshape(shape)
        out.append(encode_sdf(d, opts["trunc"]))
    return SignalSet(torch.from_numpy(np.stack(out))[..., None], grid_coordinates(shape), 1.0,
                     [name for _, name, _, _ in jobs], "sdf3d")


# ------------------------------------------------------------------------------------------ sphere


def load_sphere(config: DataConfig) -> SignalSet:
    opts = parse_options("sphere", config.transform, {"rolls": None})
    grids, names = sphere.load_grids(sphere.sphere_files(config.path))
    if config.split == "train":
        idx = list(range(len(grids) - 1)) if len(grids) > 1 else []
    elif config.split == "test":
        idx = [len(grids) - 1]
    else:
        idx = _select(names, config.split)
    if not idx:
        raise DataError(f"the split {config.split!r} selects no grid in {config.path} "
                        "(train holds out the last grid, so it needs at least two)")
    rolls = _per_split(opts["rolls"], config.split, 18, 1)
    n_lon = grids.shape[2]
    values, out_names = [], []
    for i in idx:
        for k in range(rolls):
            shift = round(k * n_lon / rolls) % n_lon
            values.append(np.roll(grids[i], shift, axis=1))
            out_names.append(names[i] if rolls == 1 else f"{names[i]}/roll{shift:03d}")
    if config.limit is not None:
        values, out_names = values[: config.limit], out_names[: config.limit]
    coords = sphere.sphere_coordinates(grids.shape[1], n_lon)
    return SignalSet(torch.from_numpy(np.stack(values))[..., None], coords, 1.0, out_names, "sphere")


# ------------------------------------------------------------------------------------------ sdf2d


def load_sdf2d(config: DataConfig) -> SignalSet:
    opts = parse_options("sdf2d", config.transform, {"size": 64, "trunc": 1.0, "count": None, "views": None,
                                                     "supersample": 8, "seed": 0, "margin": 0.8})
    size = _check_size(opts["size"])
    if opts["trunc"] <= 0 or opts["supersample"] < 1:
        raise DataError("sdf2d options trunc and supersample must be positive")
    if Path(config.path).name == "synthetic" and not Path(config.path).exists():
        count = _per_split(opts["count"], config.split, 512, 64, 512)
        if config.limit is not None:
            count = min(count, config.limit)
        start = 1_000_000 if config.split == "test" else 0  # disjoint from the training stream
        d = shapes2d.synthetic_sdfs(count, size, opts["seed"], start)
        names = [f"shape{start + i:07d}" for i in range(count)]
    else:
        d, names = _silhouettes(config, opts, size)
    return SignalSet(torch.from_numpy(encode_sdf(d, opts["trunc"]))[..., None], grid_coordinates((size, size)),
                     1.0, names, "sdf2d")


def _silhouettes(config: DataConfig, opts: dict, size: int):
    """Views of each mesh: view 0 along the mesh's z axis; then random rotations (in-plane for a flat mesh)."""
    files = mesh_files(config.path)
    files = [files[i] for i in _select([f.name for f in files], config.split)]
    if not files:
        raise DataError(f"the split {config.split!r} selects no mesh in {config.path}")
    views = _per_split(opts["views"], config.split, 8, 4)
    out, names = [], []
    for f in files:
        m = meshes.normalize_to_cube(meshes.read_obj(f))
        extent = np.ptp(m.vertices, axis=0)
        flat = extent.min() <= 1e-3 * extent.max()
        key = zlib.crc32(m.name.encode())
        for k in range(views):
            rng = np.random.default_rng([opts["seed"], key, k])
            if k == 0:
                rotation = np.eye(3)
            elif flat:  # rotate within the mesh's own plane: any other view is a sliver
                normal = int(np.argmin(extent))
                t = rng.uniform(0, 2 * np.pi)
                i, j = [a for a in range(3) if a != normal]
                rotation = np.eye(3)
                rotation[[i, i, j, j], [i, j, i, j]] = np.cos(t), -np.sin(t), np.sin(t), np.cos(t)
            else:
                rotation = meshes.random_rotation(rng)
            scale = 1.0 if k == 0 else float(rng.uniform(0.75, 1.0))
            a, b = meshes.pose(m, rotation, scale, opts["margin"])
            v = m.vertices @ a.T + b
            if flat:  # look along the mesh's normal
                normal = int(np.argmin(np.ptp(v, axis=0)))
                v = v[:, [a_ for a_ in range(3) if a_ != normal] + [normal]]
            out.append(shapes2d.silhouette_sdf(v, m.faces, size, opts["supersample"]))
            names.append(f"{m.name}/view{k:02d}")
            if config.limit is not None and len(out) >= config.limit:
                return np.stack(out), names
    return np.stack(out), names


# ------------------------------------------------------------------------------------------ metrics


def _as_grid(signals: SignalSet, flat: torch.Tensor) -> np.ndarray:
    """(N, P, 1) → (N, *grid) numpy."""
    return flat.detach().cpu().float().reshape(flat.shape[0], *signals.grid_shape).numpy()


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    axes = tuple(range(1, a.ndim))
    inter, union = (a & b).sum(axis=axes), (a | b).sum(axis=axes)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def voxel_metrics(signals: SignalSet, recon: torch.Tensor) -> dict[str, np.ndarray]:
    """Accuracy of the occupancy thresholded at 0.5 (the papers' voxel accuracy) and IoU of the inside."""
    t, p = _as_grid(signals, signals.targets()) > 0.5, _as_grid(signals, recon) > 0.5
    return {"accuracy": (t == p).reshape(len(t), -1).mean(axis=1), "iou": _iou(t, p)}


def surface_points(volume: np.ndarray, count: int = 10_000, seed: int = 0) -> np.ndarray | None:
    """Area-uniform points on the 0.5 level of an encoded SDF grid (inside = below 0.5)."""
    surface = meshes.extract_surface(volume, 0.5, inside_above=False)
    if surface is None:
        return None
    return meshes.sample_triangles(surface[0], surface[1], count, np.random.default_rng(seed))


def sdf3d_metrics(signals: SignalSet, recon: torch.Tensor) -> dict[str, np.ndarray]:
    """Chamfer-L1 between the marching-cubes surfaces of original and fit (grid units; NaN when the
    fit has no surface, counted by ``surface_found``), and IoU of the inside (d < 0)."""
    t, p = _as_grid(signals, signals.targets()), _as_grid(signals, recon)
    chamfer, found = np.full(len(t), np.nan), np.zeros(len(t))
    for k in range(len(t)):
        a, b = surface_points(t[k]), surface_points(p[k])
        if a is not None and b is not None:
            chamfer[k], found[k] = meshes.chamfer_distance(a, b), 1.0
    return {"chamfer": chamfer, "surface_found": found, "iou": _iou(t < 0.5, p < 0.5)}


def sdf2d_metrics(signals: SignalSet, recon: torch.Tensor) -> dict[str, np.ndarray]:
    return {"iou": _iou(_as_grid(signals, signals.targets()) < 0.5, _as_grid(signals, recon) < 0.5)}


# ------------------------------------------------------------------------------------------ pictures


def _file_stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _save_shapes(signals: SignalSet, recon: torch.Tensor, path: Path, inside_above: bool, cmap: str) -> list[Path]:
    """The picture at ``path`` and, in ``<stem>_meshes/``, each shown signal's original and fit as OBJ."""
    path = Path(path)
    n = min(PICTURE_SIGNALS, len(signals))
    t, p = _as_grid(signals, signals.targets()[:n]), _as_grid(signals, recon[:n])
    names = signals.names[:n] if signals.names else [str(k) for k in range(n)]
    mesh_dir = path.parent / f"{path.stem}_meshes"
    mesh_dir.mkdir(parents=True, exist_ok=True)
    surfaces, slices = [], []
    for k in range(n):
        pair = []
        for vol, label in ((t[k], "original"), (p[k], "fit")):
            s = meshes.extract_surface(vol, 0.5, inside_above)
            if s is not None:
                meshes.write_obj(mesh_dir / f"{_file_stem(names[k])}_{label}.obj", *s, comment=f"{names[k]} {label}")
            pair.append(s)
        surfaces.append(pair)
        mid = t[k].shape[2] // 2
        slices.append((t[k][:, :, mid].T, p[k][:, :, mid].T))  # x right, y up, at z = 0
    render.save_shape_picture(path, surfaces, slices, names, 0.5, cmap)
    return [path, mesh_dir]


def save_voxels(signals, recon, path):
    return _save_shapes(signals, recon, path, inside_above=True, cmap="viridis")


def save_sdf3d(signals, recon, path):
    return _save_shapes(signals, recon, path, inside_above=False, cmap="coolwarm")


def save_sphere(signals: SignalSet, recon: torch.Tensor, path: Path) -> list[Path]:
    n = min(4, len(signals))
    t, p = _as_grid(signals, signals.targets()[:n]), _as_grid(signals, recon[:n])
    names = signals.names[:n] if signals.names else [str(k) for k in range(n)]
    n_lat, n_lon = signals.grid_shape
    return [render.save_world_maps(path, t, p, names, sphere.latitudes(n_lat), sphere.longitudes(n_lon))]


def save_sdf2d(signals: SignalSet, recon: torch.Tensor, path: Path) -> list[Path]:
    n = min(8, len(signals))
    t, p = _as_grid(signals, signals.targets()[:n]), _as_grid(signals, recon[:n])
    names = signals.names[:n] if signals.names else [str(k) for k in range(n)]
    return [render.save_sdf2d_picture(path, t, p, names)]


register_modality(Modality("voxels", "occupancy grids of OBJ meshes: (x, y, z) -> {0, 1}; accuracy, IoU",
                           3, 1, load_voxels, voxel_metrics, save_voxels, augmentations=("poses",), surface=True))
register_modality(Modality("sdf3d", "signed distances to OBJ meshes on a grid: (x, y, z) -> d; Chamfer",
                           3, 1, load_sdf3d, sdf3d_metrics, save_sdf3d, augmentations=("poses",), surface=True))
register_modality(Modality("sphere", "lat/lon grids (ERA5 temperature) as points on the unit sphere; PSNR",
                           3, 1, load_sphere, None, save_sphere, augmentations=("rolls",)))
register_modality(Modality("sdf2d", "2D signed distance images of shapes: (x, y) -> d; PSNR, IoU",
                           2, 1, load_sdf2d, sdf2d_metrics, save_sdf2d, augmentations=("views", "count")))
