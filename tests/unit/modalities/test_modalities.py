"""The 3D, sphere and 2D-SDF modalities on small synthetic data (no files outside tmp_path)."""

import numpy as np
import pytest
import torch

from helpers import CUBE, PRISM, TETRA, write_grids, write_meshes  # noqa: F401
from metasparse.config import DataConfig
from metasparse.data.geometry import meshes, shapes2d, sphere
from metasparse.errors import DataError
from metasparse.modalities.base import available_modalities, get_modality, split_modality_path
from metasparse.modalities.grids import (
    parse_options,
    sdf2d_metrics,
    sdf3d_metrics,
    voxel_metrics,
)
from metasparse.modalities.loading import load_signal_set


def grid(n):
    return np.linspace(-1.0, 1.0, n)


# ------------------------------------------------------------------------------------------ OBJ


def test_obj_parser_triangulates_and_resolves_every_index_form():
    cube = meshes.parse_obj(CUBE)
    assert cube.vertices.shape == (8, 3) and cube.faces.shape == (12, 3)
    tetra = meshes.parse_obj(TETRA)
    assert tetra.faces.tolist() == [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]


@pytest.mark.parametrize("text, message", [
    ("v 0 0 0\nv 1 0 x\nf 1 2 3\n", "line 2: bad vertex"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", "refers to vertex 4"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", "line 4: a face needs at least 3"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", "has no faces"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "face index 0"),
    ("v 0 0 0\nv 0 0 0\nv 0 0 0\nf 1 2 3\n", "all vertices are at one point"),
    ("hello\n", "has no vertices"),
])
def test_corrupt_obj_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.obj"
    path.write_text(text)
    with pytest.raises(DataError) as e:
        meshes.read_obj(path)
    assert message in str(e.value) and "bad.obj" in str(e.value) and "\n" not in str(e.value)


def test_binary_file_is_not_an_obj(tmp_path):
    path = tmp_path / "x.obj"
    path.write_bytes(b"v 0 0 0\x00\x01\x02")
    with pytest.raises(DataError, match="not a text OBJ"):
        meshes.read_obj(path)


def test_write_obj_and_ply_round_trip(tmp_path):
    cube = meshes.parse_obj(CUBE)
    meshes.write_obj(tmp_path / "c.obj", cube.vertices, cube.faces, comment="cube")
    back = meshes.read_obj(tmp_path / "c.obj")
    assert np.allclose(back.vertices, cube.vertices) and (back.faces == cube.faces).all()
    ply = meshes.write_ply(tmp_path / "c.ply", cube.vertices, cube.faces).read_bytes()
    assert ply.startswith(b"ply\nformat binary_little_endian") and b"element face 12" in ply


# ------------------------------------------------------------------------------------------ occupancy


def test_occupancy_of_a_cube_is_exact():
    cube = meshes.normalize_to_cube(meshes.parse_obj(CUBE), margin=0.5)
    inside1d = np.abs(grid(8)) < 0.5
    expected = inside1d[:, None, None] & inside1d[None, :, None] & inside1d[None, None, :]
    for robust in (True, False):
        assert (meshes.occupancy(cube, (8, 8, 8), robust=robust) == expected).all()


@pytest.mark.parametrize("n", [9, 17])
def test_rays_through_edges_and_vertices_count_once(n):
    # Rotated 45 degrees about z, grid points fall exactly on the cube's diagonal edges.
    cube = meshes.normalize_to_cube(meshes.parse_obj(CUBE), margin=0.5)
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    a, b = meshes.pose(cube, np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]), 1.0, 0.9)
    posed = cube.transformed(a, b)
    p = np.stack(np.meshgrid(grid(n), grid(n), grid(n), indexing="ij"), -1).reshape(-1, 3)
    local = (p - b) @ np.linalg.inv(a).T
    expected = (np.abs(local) < 0.5 - 1e-9).all(axis=1).reshape(n, n, n)
    boundary = (np.abs(np.abs(local) - 0.5) < 1e-9).any(axis=1).reshape(n, n, n)
    got = meshes.occupancy(posed, (n, n, n), robust=False)
    assert (got == expected)[~boundary].all()


def test_occupancy_of_a_tetrahedron_matches_barycentric_test():
    tetra = meshes.normalize_to_cube(meshes.parse_obj(TETRA))
    v = tetra.vertices
    p = np.stack(np.meshgrid(grid(12), grid(12), grid(12), indexing="ij"), -1).reshape(-1, 3)
    lam = np.linalg.solve(np.stack([v[1] - v[0], v[2] - v[0], v[3] - v[0]], axis=1), (p - v[0]).T).T
    expected = ((lam > 0).all(axis=1) & (lam.sum(axis=1) < 1)).reshape(12, 12, 12)
    assert (meshes.occupancy(tetra, (12, 12, 12)) == expected).all()


def test_winding_numbers_fill_a_mesh_with_a_hole():
    closed = meshes.normalize_to_cube(meshes.parse_obj(CUBE), margin=0.7)
    open_top = meshes.Mesh(closed.vertices, closed.faces[2:])  # the two triangles of z = -1 removed
    assert np.allclose(meshes.winding_number(closed, np.zeros((1, 3))), 1.0, atol=1e-5)
    assert abs(meshes.winding_number(open_top, np.zeros((1, 3)))[0] - 5 / 6) < 1e-4
    expected = meshes.occupancy(closed, (8, 8, 8))
    assert (meshes.occupancy(open_top, (8, 8, 8), robust=True) == expected).all()
    assert (meshes.occupancy(open_top, (8, 8, 8), robust=False) != expected).any()  # z rays leak


def test_clustered_winding_numbers_match_exact_ones():
    rng = np.random.default_rng(0)
    # A finely triangulated sphere: enough faces for the clustered path.
    t = np.linspace(0, np.pi, 40)[1:-1]
    ph = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    tt, pp = np.meshgrid(t, ph, indexing="ij")
    v = np.concatenate([[[0, 0, 1]], np.stack([np.sin(tt) * np.cos(pp), np.sin(tt) * np.sin(pp), np.cos(tt)],
                                              -1).reshape(-1, 3), [[0, 0, -1]]])
    rows, cols, faces = len(t), len(ph), []
    for j in range(cols):
        faces.append([0, 1 + j, 1 + (j + 1) % cols])
        faces.append([len(v) - 1, 1 + (rows - 1) * cols + (j + 1) % cols, 1 + (rows - 1) * cols + j])
        for i in range(rows - 1):
            a, b = 1 + i * cols + j, 1 + i * cols + (j + 1) % cols
            faces += [[a, a + cols, b + cols], [a, b + cols, b]]
    sphere_mesh = meshes.Mesh(v * 0.8, np.array(faces))
    points = rng.uniform(-1, 1, (300, 3))
    exact = meshes.winding_number(sphere_mesh, points, exact_below=10**9)
    fast = meshes.winding_number(sphere_mesh, points, exact_below=0)
    assert np.abs(exact - fast).max() < 0.05
    inside = np.linalg.norm(points, axis=1) < 0.78
    assert ((exact > 0.5) == inside)[np.abs(np.linalg.norm(points, axis=1) - 0.8) > 0.03].all()


# ------------------------------------------------------------------------------------------ loaders


def test_voxel_loader_shapes_splits_and_poses(tmp_path):
    folder = write_meshes(tmp_path / "m")
    train = load_signal_set(DataConfig(path=str(folder), modality="voxels", split="train", transform="size=8,poses=3"))
    test = load_signal_set(DataConfig(path=str(folder), modality="voxels", split="test", transform="size=8"))
    assert train.values.shape[1:] == (8, 8, 8, 1) and train.coords.shape == (8, 8, 8, 3)
    assert train.modality == "voxels" and train.values.dtype == torch.uint8 and train.scale == 1.0
    train_meshes = {n.split("/")[0] for n in train.names}
    test_meshes = {n.split("/")[0] for n in test.names}
    assert train_meshes and test_meshes and not train_meshes & test_meshes  # whole meshes held out
    assert len(train) == 3 * len(train_meshes) and len(test) == 4 * len(test_meshes)
    again = load_signal_set(DataConfig(path=str(folder), modality="voxels", split="train", transform="size=8,poses=3"))
    assert torch.equal(train.values, again.values)  # seeded poses
    assert not torch.equal(train.values[0], train.values[1])  # pose 1 is not pose 0
    assert set(train.values.unique().tolist()) <= {0, 1}


def test_voxel_loader_cube_in_canonical_pose(tmp_path):
    folder = write_meshes(tmp_path / "m", names=("cube",))
    s = load_signal_set(DataConfig(path=str(folder), modality="voxels", transform="size=8,margin=0.5"))
    assert s.names == ["cube/pose00"]
    inside1d = np.abs(grid(8)) < 0.5
    expected = inside1d[:, None, None] & inside1d[None, :, None] & inside1d[None, None, :]
    assert (s.values[0, ..., 0].numpy() == expected).all()


def test_sdf3d_signs_and_distances(tmp_path):
    folder = write_meshes(tmp_path / "m", names=("cube",))
    # size 10: no grid point lies on the surface (|x| = 0.5), where the sign is a coin toss
    s = load_signal_set(DataConfig(path=str(folder), modality="sdf3d", transform="size=10,margin=0.5,samples=20000"))
    v = s.values[0, ..., 0].numpy()
    d = (v - 0.5) * 2.0  # trunc 1
    c = s.coords.numpy()
    exact = np.abs(c).max(axis=-1) - 0.5  # inside: -distance to the nearest face; outside: a lower bound
    inside = (np.abs(c) < 0.5).all(axis=-1)
    assert (d[inside] < 0).all() and (d[~inside] > 0).all()
    assert np.abs(d[inside] - exact[inside]).max() < 0.03
    assert v[4, 4, 4] == pytest.approx(0.5 - (0.5 - 1 / 9) / 2, abs=0.01)  # 0.39 deep
    assert v.min() >= 0 and v.max() <= 1


def test_flat_meshes_are_skipped_or_refused(tmp_path):
    folder = write_meshes(tmp_path / "m", names=("cube",))
    (folder / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    s = load_signal_set(DataConfig(path=str(folder), modality="voxels", transform="size=4"))
    assert s.names == ["cube/pose00"]
    with pytest.raises(DataError, match="flat"):
        load_signal_set(DataConfig(path=str(folder / "flat.obj"), modality="voxels"))


def test_bad_options_and_paths_are_clear(tmp_path):
    with pytest.raises(DataError, match="options: size"):
        parse_options("voxels", "sise=3", {"size": 32})
    with pytest.raises(DataError, match="expects a number"):
        parse_options("voxels", "size=big", {"size": 32})
    assert parse_options("sdf2d", "size=16, trunc=0.5", {"size": 64, "trunc": 1.0}) == {"size": 16, "trunc": 0.5}
    with pytest.raises(DataError, match="no .obj"):
        load_signal_set(DataConfig(path=str(tmp_path), modality="voxels"))
    with pytest.raises(DataError, match="unknown modality"):
        load_signal_set(DataConfig(path=str(tmp_path), modality="nope"))


def test_sphere_coordinates_are_on_the_unit_sphere():
    c = sphere.sphere_coordinates(46, 90).numpy()
    assert c.shape == (46, 90, 3)
    assert np.allclose(np.linalg.norm(c, axis=-1), 1.0, atol=1e-6)
    assert np.allclose(c[0, :, 2], 1.0) and np.allclose(c[-1, :, 2], -1.0)  # north first
    assert np.allclose(c[23, 0], [np.cos(np.deg2rad(2)), 0, np.sin(np.deg2rad(-2))], atol=1e-6)
    assert np.allclose(c[:, 0, 1], 0.0) and c[23, 22, 1] > 0.99  # lon 88 degrees is +y


def test_sphere_loader_rolls_four_and_holds_out_the_last(tmp_path):
    folder = write_grids(tmp_path / "era5")
    train = load_signal_set(DataConfig(path=str(folder), modality="sphere", split="train", transform="rolls=4"))
    test = load_signal_set(DataConfig(path=str(folder), modality="sphere", split="test"))
    assert len(train) == 2 * 4 and train.values.shape[1:] == (6, 12, 1) and train.coords.shape == (6, 12, 3)
    assert test.names == ["era5_t2m_normalized_0002"]
    first = np.load(folder / "era5_t2m_normalized_0000.npy")
    assert np.array_equal(train.values[1, ..., 0].numpy(), np.roll(first, 3, axis=1))
    assert all("normalized_0002" not in n for n in train.names)


def test_sphere_refuses_unnormalised_or_mismatched_grids(tmp_path):
    np.save(tmp_path / "k.npy", np.full((4, 8), 280.0, dtype=np.float32))
    with pytest.raises(DataError, match="normalized"):
        load_signal_set(DataConfig(path=str(tmp_path / "k.npy"), modality="sphere"))
    folder = tmp_path / "two"
    folder.mkdir()
    np.save(folder / "a_normalized.npy", np.zeros((4, 8), dtype=np.float32))
    np.save(folder / "b_normalized.npy", np.zeros((5, 8), dtype=np.float32))
    with pytest.raises(DataError, match="different sizes"):
        load_signal_set(DataConfig(path=str(folder), modality="sphere"))


def test_sdf2d_synthetic_is_deterministic_and_split():
    cfg = DataConfig(path="synthetic", modality="sdf2d", split="train", transform="size=16,count=5")
    a, b = load_signal_set(cfg), load_signal_set(cfg)
    test = load_signal_set(DataConfig(path="synthetic", modality="sdf2d", split="test", transform="size=16,count=3"))
    assert a.values.shape == (5, 16, 16, 1) and a.coords.shape == (16, 16, 2) and torch.equal(a.values, b.values)
    assert not set(a.names) & set(test.names)
    assert float(a.values.min()) >= 0 and float(a.values.max()) <= 1
    inside = (a.values < 0.5).float().mean(dim=(1, 2, 3))
    assert ((inside > 0) & (inside < 1)).all()  # every image has a shape and a background
    short = load_signal_set(DataConfig(path="synthetic", modality="sdf2d", split="train", transform="size=16,count=2"))
    assert torch.equal(short.values, a.values[:2])  # signal i does not depend on the count


def test_analytic_sdfs():
    p = np.stack(np.meshgrid(grid(21), grid(21), indexing="ij"), -1)
    assert np.allclose(shapes2d.circle_sdf(p, (0, 0), 0.5), np.linalg.norm(p, axis=-1) - 0.5)
    square = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    assert np.allclose(shapes2d.polygon_sdf(p, square), shapes2d.box_sdf(p, (0, 0), (0.5, 0.5), 0.0))


def test_sdf2d_silhouettes_of_meshes(tmp_path):
    folder = write_meshes(tmp_path / "m", names=("cube", "tetra"))
    s = load_signal_set(DataConfig(path=str(folder), modality="sdf2d", transform="size=17,views=2,margin=0.5"))
    assert s.names == ["cube/view00", "cube/view01", "tetra/view00", "tetra/view01"]
    front = (s.values[0, ..., 0].numpy() - 0.5) * 2  # the cube seen face-on: a square of half-side 0.5
    p = s.coords.numpy()
    exact = shapes2d.box_sdf(p, (0, 0), (0.5, 0.5), 0.0)
    assert np.abs(front - exact).max() < 2.0 / 16 / 8 + 1e-6


# ------------------------------------------------------------------------------------------ metrics


def test_metrics(tmp_path):
    folder = write_meshes(tmp_path / "m", names=("cube",))
    vox = load_signal_set(DataConfig(path=str(folder), modality="voxels", transform="size=8,poses=2"))
    m = voxel_metrics(vox, vox.targets())
    assert np.allclose(m["accuracy"], 1) and np.allclose(m["iou"], 1)
    m = voxel_metrics(vox, torch.zeros_like(vox.targets()))
    assert np.allclose(m["iou"], 0) and (m["accuracy"] < 1).all()
    sdf = load_signal_set(DataConfig(path=str(folder), modality="sdf3d", transform="size=10,poses=2,samples=5000"))
    m = sdf3d_metrics(sdf, sdf.targets())
    assert np.allclose(m["chamfer"], 0) and np.allclose(m["surface_found"], 1) and np.allclose(m["iou"], 1)
    shifted = (sdf.targets() + 0.05).clamp(0, 1)  # the surface moves inwards by 0.1 grid units
    assert 0.05 < sdf3d_metrics(sdf, shifted)["chamfer"].mean() < 0.15
    m = sdf3d_metrics(sdf, torch.full_like(sdf.targets(), 0.9))
    assert np.isnan(m["chamfer"]).all() and (m["surface_found"] == 0).all()
    s2 = load_signal_set(DataConfig(path="synthetic", modality="sdf2d", transform="size=16,count=2"))
    assert np.allclose(sdf2d_metrics(s2, s2.targets())["iou"], 1)


def test_marching_cubes_surface_is_closed_and_outward():
    n = 16
    p = np.stack(np.meshgrid(grid(n), grid(n), grid(n), indexing="ij"), -1)
    ball = np.linalg.norm(p, axis=-1)
    for vol, above in ((1.0 - ball, True), (0.5 + (ball - 0.6) / 2, False)):
        level = 0.4 if above else 0.5
        v, f = meshes.extract_surface(vol, level, inside_above=above)
        tri = v[f]
        volume = np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
        assert volume == pytest.approx(4 / 3 * np.pi * 0.6**3, rel=0.1)  # positive: outward faces
        assert np.abs(np.linalg.norm(v, axis=1) - 0.6).max() < 0.05
    assert meshes.extract_surface(np.zeros((4, 4, 4)), 0.5, True) is None


def test_registry():
    names = available_modalities()
    assert {"image", "voxels", "sdf3d", "sphere", "sdf2d"} <= set(names)
    assert get_modality("voxels").in_dim == 3 and get_modality("sdf2d").out_dim == 1
    assert get_modality("unregistered").metrics is None
    assert split_modality_path("sdf2d:synthetic") == ("sdf2d", "synthetic")
    assert split_modality_path("C:/photos") == ("image", "C:/photos")
