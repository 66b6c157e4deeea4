import dataclasses
import json
from pathlib import Path

import pytest

import metasparse
from metasparse.config import (
    ALLOWED,
    DataConfig,
    ProblemConfig,
    PruneConfig,
    RunConfig,
    TrainConfig,
    allowed_values,
    apply_overrides,
)
from metasparse.errors import ConfigError
from metasparse.meta.engine import MetaConfig
from metasparse.meta.fit import FitConfig
from metasparse.nn.siren import ModelConfig
from metasparse.presets import get_preset, list_presets
from metasparse.utils import tensorfile as ckpt

BUNDLED = Path(metasparse.__file__).parent / "pretrained" / "codec-default.safetensors"
SECTIONS = (RunConfig, ModelConfig, ProblemConfig, MetaConfig, DataConfig, PruneConfig, TrainConfig,
            FitConfig)


def small() -> RunConfig:
    return RunConfig(model=ModelConfig(width=8, depth=2, w0=30.0), train=TrainConfig(steps=4, device="cpu"))


@pytest.mark.parametrize(("override", "field", "allowed"), [
    ("meta.algorithm=fomal", "meta.algorithm", '"maml", "fomaml", "reptile"'),
    ("prune.method=magnitud", "prune.method", '"magnitude", "random"'),
    ("train.steps=-5", "train.steps", "integer >= 0"),
    ("model.width=true", "model.width", "integer"),
    ("meta.batch_size=0", "meta.batch_size", "integer >= 1"),
    ("meta.outer_lr=nan", "meta.outer_lr", "finite number > 0"),
    ("meta.inner_lr=-0.1", "meta.inner_lr", "finite number > 0"),
    ("meta.outer_lr=Infinity", "meta.outer_lr", "finite number > 0"),
    ("fit.optimizer=adamw", "fit.optimizer", '"adam", "sgd", "inner"'),
    ("fit.ema_decay=1.5", "fit.ema_decay", "< 1"),
    ("prune.fraction=1", "prune.fraction", "between 0 and 1"),
    ("problem.gate_init_keep=1", "problem.gate_init_keep", "between 0 and 1"),
    ("problem.kind=mscn-update", "problem.kind", '"mscn-updates"'),
    ("model.kind=siren2", "model.kind", '"siren", "ffn"'),
    ("train.steps=2.5", "train.steps", "integer"),
    ("meta.compile=maybe", "meta.compile", "true or false"),
    ("prune.fresh_optimizer=sometimes", "prune.fresh_optimizer", "true or false"),
    ("train.device=gpu", "train.device", "cuda"),
    ("data.modality=sound", "data.modality", '"image"'),
    ("data.limit=0", "data.limit", "integer >= 1"),
    ("meta.lr_clip=[1.0,0.5]", "meta.lr_clip", "low <= high"),
    ("meta.meta_sgd_init=[0.1]", "meta.meta_sgd_init", "2 values"),
    ("problem.train_budgets=[4,0]", "problem.train_budgets", "integer >= 1"),
    ("problem.adapt_gates_inner=true", "problem.adapt_gates_inner", "false"),
])
def test_a_bad_value_is_one_line_naming_the_field_the_value_and_the_choices(override, field, allowed):
    with pytest.raises(ConfigError) as caught:
        apply_overrides(small(), [override])
    message = str(caught.value)
    assert "\n" not in message
    assert field in message and allowed in message
    assert override.split("=", 1)[1].lower().strip("[]").split(",")[0] in message.lower()


def test_values_inside_the_allowed_ones_pass_and_keep_their_types():
    c = apply_overrides(small(), [
        "meta.algorithm=fomaml", "train.steps=0", "model.w0=12", "meta.outer_lr=1e-3", "name=5",
        "data.path=true", "val_data.limit=3", "fit.ema_decay=0.9", "meta.lr_lr=null", "train.device=cuda:1",
    ])
    assert c.meta.algorithm == "fomaml" and c.train.steps == 0 and c.model.w0 == 12.0
    assert c.name == "5" and c.data.path == "true"  # text fields take the text as written
    assert c.val_data == DataConfig(limit=3)
    assert apply_overrides(c, ["val_data=null"]).val_data is None
    assert apply_overrides(small(), ["train.steps=30.0"]).train.steps == 30  # whole, as JSON may write it


@pytest.mark.parametrize("overrides", [
    ["problem.kind=mscn-updates", "prune.rounds=2", "prune.steps_per_round=3"],
    ["problem.kind=modulations", "prune.rounds=1", "prune.steps_per_round=3"],
])
def test_a_problem_that_cannot_be_pruned_is_refused_rather_than_left_dense(overrides):
    with pytest.raises(ConfigError, match=r"prune\.rounds = \d.*cannot be pruned"):
        apply_overrides(small(), overrides)


def test_combinations_that_would_be_silently_ignored_are_refused():
    with pytest.raises(ConfigError, match="prune.steps_per_round = 0"):
        apply_overrides(small(), ["prune.rounds=2"])  # the rounds would never start
    with pytest.raises(ConfigError, match="problem.latent_dim"):
        apply_overrides(small(), ["problem.kind=functa"])
    with pytest.raises(ConfigError, match="problem.latent_dim"):
        apply_overrides(small(), ["problem.latent_dim=16"])  # only functa reads it
    with pytest.raises(ConfigError, match="Reptile"):
        apply_overrides(small(), ["problem.kind=modulations", "meta.algorithm=reptile"])
    assert apply_overrides(small(), ["prune.rounds=2", "prune.steps_per_round=3"]).prune.rounds == 2
    with pytest.raises(ConfigError, match="data.extra_paths"):
        apply_overrides(small(), ['data.path="samples"', 'data.extra_paths=["more"]'])  # samples are not a folder
    with pytest.raises(ConfigError, match="data.extra_paths"):
        apply_overrides(small(), ['data.path="a"', 'data.modality="voxels"', 'data.extra_paths=["b"]'])


@pytest.mark.parametrize("preset", [p.name for p in list_presets()])
def test_every_preset_validates_and_round_trips_through_json(preset):
    config = get_preset(preset)
    assert config.validate() is config
    assert RunConfig.from_dict(json.loads(config.to_json())) == config


def test_every_field_of_every_section_has_allowed_values():
    for section in SECTIONS:
        for f in dataclasses.fields(section):
            if section is RunConfig and f.name not in ALLOWED[RunConfig]:
                continue  # a nested section, checked field by field
            assert allowed_values(section, f.name).description, f"{section.__name__}.{f.name}"


def test_a_config_file_is_validated_when_loaded():
    d = small().to_dict()
    d["meta"]["algorithm"] = "fomal"
    with pytest.raises(ConfigError, match="meta.algorithm"):
        RunConfig.from_dict(d)
    d = small().to_dict()
    d["model"]["width"] = True
    with pytest.raises(ConfigError, match="model.width = true"):
        RunConfig.from_dict(d)
    d = small().to_dict()
    d["meta"]["nope"] = 1
    with pytest.raises(ConfigError, match="unknown config field meta.nope"):
        RunConfig.from_dict(d)


def test_removed_fields_are_skipped_in_old_files_but_refused_as_overrides():
    d = small().to_dict()
    d["data"]["patches_per_epoch"] = 4096
    d["train"].update(val_every=0, val_signals=8)
    assert RunConfig.from_dict(d) == small()
    for removed in ("data.patches_per_epoch=1", "train.val_every=1", "train.val_signals=1"):
        with pytest.raises(ConfigError, match="unknown config field"):
            apply_overrides(small(), [removed])
    with pytest.raises(ConfigError, match="expected one of steps, seed, device, log_every, checkpoint_every$"):
        apply_overrides(small(), ["train.val_every=1"])  # the message lists the fields there are


def test_the_bundled_models_configuration_still_loads():
    _, info = ckpt.load(BUNDLED)
    assert RunConfig.from_dict(info["config"]).name == "codec-photos"


def test_the_trainer_validates_a_config_made_in_code_before_any_work(tmp_path):
    from metasparse.training.trainer import Trainer

    bad = dataclasses.replace(small(), meta=MetaConfig(algorithm="fomal"))
    with pytest.raises(ConfigError, match="meta.algorithm"):
        Trainer(bad, tmp_path, source=object(), device="cpu")  # a source it never gets to read
    assert not any(tmp_path.iterdir())


def test_evaluate_refuses_a_bad_fitting_setting_before_fitting(tiny_signals):
    from metasparse.evaluation import evaluate
    from metasparse.training.model_file import MetaModel

    config = RunConfig(model=ModelConfig(width=8, depth=2, w0=30.0))
    model = MetaModel(config, {"theta": {}})
    with pytest.raises(ConfigError, match="fit.optimizer"):
        evaluate(model, tiny_signals, dataclasses.replace(config.fit, optimizer="adamw"), "cpu")
    with pytest.raises(ConfigError, match="fit.lr"):
        evaluate(model, tiny_signals, dataclasses.replace(config.fit, lr=-1.0), "cpu")
