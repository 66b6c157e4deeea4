"""Builders of test data shared by several test modules (tests/ is on the import path)."""

from __future__ import annotations

import numpy as np
from PIL import Image

CUBE = """# a unit cube, quads
o cube
v -1 -1 -1
v 1 -1 -1
v 1 1 -1
v -1 1 -1
v -1 -1 1
v 1 -1 1
v 1 1 1
v -1 1 1
vn 0 0 1
usemtl none
f 1 4 3 2
f 5 6 7 8
f 1 2 6 5
f 2 3 7 6
f 3 4 8 7
f 4 1 5 8
"""

TETRA = """v 0 0 0
v 1 0 0
v 0 1 0
v 0 0 1
f 1/1/1 3/2/1 2/3/1
f 1//1 2//1 4//1
f -4 -1 -2
f 2 3 4
"""

PRISM = """v -1 -1 -1
v 1 -1 -1
v 0 1 -1
v -1 -1 1
v 1 -1 1
v 0 1 1
f 1 3 2
f 4 5 6
f 1 2 5 4
f 2 3 6 5
f 3 1 4 6
"""


def write_meshes(folder, names=("cube", "tetra", "prism")):
    folder.mkdir(parents=True, exist_ok=True)
    text = {"cube": CUBE, "tetra": TETRA, "prism": PRISM}
    for n in names:
        (folder / f"{n}.obj").write_text(text[n])
    return folder


def write_grids(folder, n=3, shape=(6, 12)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        np.save(folder / f"era5_t2m_normalized_{i:04d}.npy", rng.random(shape).astype(np.float32))
        np.save(folder / f"era5_t2m_kelvin_{i:04d}.npy", 250 + rng.random(shape).astype(np.float32))
    return folder


def write_images(folder, n=4, size=12):
    """``n`` random RGB PNGs of ``size`` x ``size`` in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder
