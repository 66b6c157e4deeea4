"""The codec's networks: MSCN sparse shifts of CPU-sized SIRENs."""

from __future__ import annotations

import dataclasses

from metasparse.config import DataConfig, ProblemConfig, RunConfig, TrainConfig
from metasparse.meta.engine import MetaConfig
from metasparse.meta.fit import FitConfig
from metasparse.nn.siren import ModelConfig
from metasparse.presets.registry import PRESETS

# One network for every quality level: the training budget cycles through the levels' counts
# (always the top-k gates), so each nested set of modulations is trained; λ only orders the rest.
CODEC_BUDGETS = (16, 24, 32, 48, 64, 96, 128)
CODEC_PROBLEM = ProblemConfig(kind="mscn-modulations", l0_weight=0.001, gate_init_keep=0.95, gate_lr_multiplier=10.0,
                              train_budgets=CODEC_BUDGETS)

PRESETS.add_config(RunConfig(
    name="codec-photos",
    description="The bundled codec's network: MSCN sparse shifts of a CPU-sized 4x64 SIREN, 32x32 photo patches",
    model=ModelConfig(kind="siren", width=64, depth=4, w0=30.0, bias_init="uniform"),
    problem=CODEC_PROBLEM,
    meta=MetaConfig(algorithm="maml", inner_steps=3, inner_lr=1e-2, meta_sgd=True, meta_sgd_init=(0.005, 0.1),
                    outer_lr=3e-4, batch_size=32, grad_clip=1.0),
    data=DataConfig(path="photos", split="train:0.15", patch=32),
    train=TrainConfig(steps=20_000, log_every=50, checkpoint_every=250),
    fit=FitConfig(steps=3, optimizer="inner", batch_size=256),
))

# The next codec's network: 4x the width^2 of the bundled one (encode and decode cost about 5x, still seconds for
# a 768x512 photo on 2 cores), trained on patches of the 78 photos and of Imagenette's 4,000 training photos.
# At the bundled model's outer lr (3e-4) it collapsed after 4,600 steps (train PSNR 20 -> 11 dB), hence 1e-4.
WIDE_BUDGETS = (16, 24, 32, 48, 64, 96, 128, 192, 256)
PRESETS.add_config(RunConfig(
    name="codec-photos-wide",
    description="A 5x128 SIREN with MSCN sparse shifts, 32x32 patches of the photos and of Imagenette's training set",
    model=ModelConfig(kind="siren", width=128, depth=5, w0=30.0, bias_init="uniform"),
    problem=dataclasses.replace(CODEC_PROBLEM, train_budgets=WIDE_BUDGETS),
    meta=MetaConfig(algorithm="maml", inner_steps=3, inner_lr=1e-2, meta_sgd=True, meta_sgd_init=(0.005, 0.1),
                    outer_lr=1e-4, batch_size=32, grad_clip=1.0),
    # The hash split also holds out 15 % of Imagenette's names; the photos' held-out images are those of codec-photos.
    data=DataConfig(path="photos", extra_paths=("imagenette/train",), split="train:0.15", patch=32),
    train=TrainConfig(steps=200_000, log_every=50, checkpoint_every=250),
    fit=FitConfig(steps=3, optimizer="inner", batch_size=256),
))

PRESETS.add_config(RunConfig(
    name="codec-cifar10",
    description="MSCN sparse shifts of a CPU-sized 4x64 SIREN meta-trained on CIFAR-10 32x32 (COIN++'s benchmark)",
    model=ModelConfig(kind="siren", width=64, depth=4, w0=30.0, bias_init="uniform"),
    problem=CODEC_PROBLEM,
    meta=MetaConfig(algorithm="maml", inner_steps=3, inner_lr=1e-2, meta_sgd=True, meta_sgd_init=(0.005, 0.1),
                    outer_lr=3e-4, batch_size=32, grad_clip=1.0),
    data=DataConfig(path="cifar10/train.npz"),
    val_data=DataConfig(path="cifar10/test.npz", limit=200),
    train=TrainConfig(steps=20_000, log_every=50, checkpoint_every=250),
    fit=FitConfig(steps=3, optimizer="inner", batch_size=256),
))
