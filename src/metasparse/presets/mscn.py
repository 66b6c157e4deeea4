"""MSCN's settings (Schwarz & Teh 2022): gated updates and gated modulations on CelebA 64x64."""

from __future__ import annotations

from dataclasses import replace

from metasparse.config import DataConfig, ProblemConfig, RunConfig, TrainConfig
from metasparse.meta.engine import MetaConfig
from metasparse.meta.fit import FitConfig
from metasparse.nn.siren import ModelConfig
from metasparse.presets.paper import PAPER_SIREN
from metasparse.presets.registry import PRESETS

CELEBA64_TRAIN = DataConfig(path="celeba/img_align_celeba_halfres", transform="crop_resize:89,64", split="celeba_train")
CELEBA64_TEST = DataConfig(path="celeba/img_align_celeba_halfres", transform="crop_resize:89,64",
                           split="celeba_test", limit=100)
MSCN_MAML = MetaConfig(algorithm="maml", inner_steps=3, inner_lr=1e-2, meta_sgd=True, meta_sgd_init=(0.005, 0.1),
                       outer_lr=3e-6, batch_size=32)

PRESETS.add_config(RunConfig(
    name="mscn-updates-celeba64",
    description="MSCN Eq. 9: gated (sparse) inner updates of a dense SIREN, MetaSGD, CelebA 64x64",
    model=replace(PAPER_SIREN, w0=30.0),
    problem=ProblemConfig(kind="mscn-updates", l0_weight=0.1, gate_init_keep=0.9, gate_lr_multiplier=10.0),
    meta=replace(MSCN_MAML, inner_steps=2, outer_lr=1e-5, batch_size=3, meta_sgd_init=(0.001, 0.05)),
    data=CELEBA64_TRAIN,
    val_data=CELEBA64_TEST,
    train=TrainConfig(steps=20_000, log_every=100, checkpoint_every=1000),
    fit=FitConfig(steps=100, optimizer="adam", lr=1e-3, batch_size=32),
))

PRESETS.add_config(RunConfig(
    name="mscn-modulations-celeba64",
    description="MSCN Eq. 10: gated shift modulations of a 15x512 SIREN (w0 30), budget 256, CelebA 64x64",
    model=ModelConfig(kind="siren", width=512, depth=15, w0=30.0, bias_init="uniform"),
    problem=ProblemConfig(kind="mscn-modulations", l0_weight=1.0, gate_init_keep=0.9, gate_lr_multiplier=10.0,
                          target_count=256),
    meta=MSCN_MAML,
    data=CELEBA64_TRAIN,
    val_data=CELEBA64_TEST,
    train=TrainConfig(steps=100_000, log_every=100, checkpoint_every=1000),
    fit=FitConfig(steps=3, optimizer="inner", batch_size=64),
))
