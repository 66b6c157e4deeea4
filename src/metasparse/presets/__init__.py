"""Named run presets (``metasparse presets`` lists them; ``--set`` overrides any field).

Paper settings come from the papers' appendices and the official Meta-SparseINR code; the
``demo`` preset is what the README's first command runs on the photos scikit-image ships.
"""

from __future__ import annotations

from dataclasses import replace

from metasparse.config import DataConfig, ProblemConfig, PruneConfig, RunConfig, TrainConfig
from metasparse.errors import ConfigError
from metasparse.meta.engine import MetaConfig
from metasparse.meta.fit import FitConfig
from metasparse.nn.siren import ModelConfig

_PRESETS: dict[str, RunConfig] = {}


def register_preset(config: RunConfig) -> RunConfig:
    _PRESETS[config.name] = config
    return config


def get_preset(name: str) -> RunConfig:
    _load_extensions()
    if name not in _PRESETS:
        raise ConfigError(f"unknown preset {name!r}; `metasparse presets` lists them")
    return _PRESETS[name]


def list_presets() -> list[RunConfig]:
    _load_extensions()
    return [_PRESETS[k] for k in sorted(_PRESETS)]


def _load_extensions() -> None:
    import importlib
    import importlib.util

    for module in ("metasparse.presets.modalities",):
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


PAPER_SIREN = ModelConfig(kind="siren", in_dim=2, out_dim=3, width=256, depth=4, w0=200.0)
PAPER_MAML = MetaConfig(algorithm="maml", inner_steps=2, inner_lr=1e-2, outer_lr=1e-5, batch_size=3)
PAPER_FIT = FitConfig(steps=100, optimizer="adam", lr=1e-4, batch_size=8)

register_preset(RunConfig(
    name="siren-imagenette",
    description="Meta-SparseINR's dense SIREN (4x256, w0 200) meta-trained on Imagenette 178x178 (150k steps)",
    model=PAPER_SIREN,
    meta=PAPER_MAML,
    data=DataConfig(path="imagenette/train", transform="resize_short_crop:200,178"),
    val_data=DataConfig(path="imagenette/val", transform="resize_short_crop:200,178", limit=100),
    train=TrainConfig(steps=150_000, log_every=100, checkpoint_every=2000),
    fit=PAPER_FIT,
))

register_preset(RunConfig(
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

register_preset(RunConfig(
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

register_preset(RunConfig(
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

register_preset(RunConfig(
    name="demo",
    description="Small SIREN (3x64, w0 30) meta-trained for a few minutes on scikit-image's photos at 64x64 (CPU)",
    model=ModelConfig(kind="siren", width=64, depth=3, w0=30.0),
    meta=MetaConfig(algorithm="maml", inner_steps=2, inner_lr=1e-2, outer_lr=1e-4, batch_size=3),
    data=DataConfig(path="samples"),
    train=TrainConfig(steps=300, log_every=25, checkpoint_every=100),
    fit=FitConfig(steps=100, optimizer="adam", lr=1e-3, batch_size=16),
))

# --------------------------------------------------------------------------------- MSCN

CELEBA64_TRAIN = DataConfig(path="celeba/img_align_celeba_halfres", transform="crop_resize:89,64", split="celeba_train")
CELEBA64_TEST = DataConfig(path="celeba/img_align_celeba_halfres", transform="crop_resize:89,64",
                           split="celeba_test", limit=100)
MSCN_MAML = MetaConfig(algorithm="maml", inner_steps=3, inner_lr=1e-2, meta_sgd=True, meta_sgd_init=(0.005, 0.1),
                       outer_lr=3e-6, batch_size=32)

register_preset(RunConfig(
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

register_preset(RunConfig(
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

# --------------------------------------------------------------------------------- codec

# One network for every quality level: the training budget cycles through the levels' counts
# (always the top-k gates), so each nested set of modulations is trained; λ only orders the rest.
CODEC_BUDGETS = (16, 24, 32, 48, 64, 96, 128)
CODEC_PROBLEM = ProblemConfig(kind="mscn-modulations", l0_weight=0.001, gate_init_keep=0.95, gate_lr_multiplier=10.0,
                              train_budgets=CODEC_BUDGETS)

register_preset(RunConfig(
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

register_preset(RunConfig(
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

