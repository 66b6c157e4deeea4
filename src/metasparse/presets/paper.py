"""Meta-SparseINR's settings (its appendix and official code), Functa's, and the README's ``demo``."""

from __future__ import annotations

from dataclasses import replace

from metasparse.config import DataConfig, ProblemConfig, PruneConfig, RunConfig, TrainConfig
from metasparse.meta.engine import MetaConfig
from metasparse.meta.fit import FitConfig
from metasparse.nn.siren import ModelConfig
from metasparse.presets.registry import PRESETS

PAPER_SIREN = ModelConfig(kind="siren", in_dim=2, out_dim=3, width=256, depth=4, w0=200.0)
PAPER_MAML = MetaConfig(algorithm="maml", inner_steps=2, inner_lr=1e-2, outer_lr=1e-5, batch_size=3)
PAPER_FIT = FitConfig(steps=100, optimizer="adam", lr=1e-4, batch_size=8)

PRESETS.add_config(RunConfig(
    name="siren-imagenette",
    description="Meta-SparseINR's dense SIREN (4x256, w0 200) meta-trained on Imagenette 178x178 (150k steps)",
    model=PAPER_SIREN,
    meta=PAPER_MAML,
    data=DataConfig(path="imagenette/train", transform="resize_short_crop:200,178"),
    val_data=DataConfig(path="imagenette/val", transform="resize_short_crop:200,178", limit=100),
    train=TrainConfig(steps=150_000, log_every=100, checkpoint_every=2000),
    fit=PAPER_FIT,
))

PRESETS.add_config(RunConfig(
    name="meta-sparse-inr-imagenette",
    description="Algorithm 1: the dense SIREN, then 15 rounds of 20% global magnitude pruning x 30k MAML steps",
    model=PAPER_SIREN,
    meta=PAPER_MAML,
    data=DataConfig(path="imagenette/train", transform="resize_short_crop:200,178"),
    val_data=DataConfig(path="imagenette/val", transform="resize_short_crop:200,178", limit=100),
    prune=PruneConfig(rounds=15, fraction=0.2, steps_per_round=30_000),
    train=TrainConfig(steps=150_000, log_every=100, checkpoint_every=2000),
    fit=PAPER_FIT,
))

PRESETS.add_config(RunConfig(
    name="siren-celeba64",
    description="Dense SIREN meta-trained on CelebA faces at 64x64 (centre crop 89 of the half-res set, resize 64)",
    model=replace(PAPER_SIREN, w0=30.0),
    meta=PAPER_MAML,
    data=DataConfig(path="celeba/img_align_celeba_halfres", transform="crop_resize:89,64", split="celeba_train"),
    val_data=DataConfig(path="celeba/img_align_celeba_halfres", transform="crop_resize:89,64",
                        split="celeba_test", limit=100),
    train=TrainConfig(steps=20_000, log_every=100, checkpoint_every=1000),
    fit=FitConfig(steps=100, optimizer="adam", lr=1e-3, batch_size=32),
))

PRESETS.add_config(RunConfig(
    name="functa-celeba64",
    description="Functa: latent 128 -> shifts of a 15x512 SIREN (w0 30), MetaSGD, 3 inner steps, CelebA 64x64",
    model=ModelConfig(kind="siren", width=512, depth=15, w0=30.0, bias_init="uniform"),
    problem=ProblemConfig(kind="functa", latent_dim=128),
    meta=MetaConfig(algorithm="maml", inner_steps=3, inner_lr=1e-2, meta_sgd=True, meta_sgd_init=(0.005, 0.1),
                    outer_lr=3e-6, batch_size=32),
    data=DataConfig(path="celeba/img_align_celeba_halfres", transform="crop_resize:89,64", split="celeba_train"),
    val_data=DataConfig(path="celeba/img_align_celeba_halfres", transform="crop_resize:89,64",
                        split="celeba_test", limit=100),
    train=TrainConfig(steps=100_000, log_every=100, checkpoint_every=1000),
    fit=FitConfig(steps=3, optimizer="inner", batch_size=64),
))

PRESETS.add_config(RunConfig(
    name="demo",
    description="Small SIREN (3x64, w0 30) meta-trained for a few minutes on scikit-image's photos at 64x64 (CPU)",
    model=ModelConfig(kind="siren", width=64, depth=3, w0=30.0),
    meta=MetaConfig(algorithm="maml", inner_steps=2, inner_lr=1e-2, outer_lr=1e-4, batch_size=3),
    data=DataConfig(path="samples"),
    train=TrainConfig(steps=300, log_every=25, checkpoint_every=100),
    fit=FitConfig(steps=100, optimizer="adam", lr=1e-3, batch_size=16),
))
