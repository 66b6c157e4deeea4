import json

import pytest
import torch

from metasparse.config import DataConfig, PruneConfig, RunConfig, TrainConfig, apply_overrides
from metasparse.errors import ConfigError, ModelError
from metasparse.meta.engine import MetaConfig
from metasparse.modalities.loading import BatchSource
from metasparse.nn.siren import ModelConfig
from metasparse.training.model_file import MetaModel
from metasparse.training.trainer import Trainer


def tiny_config(**prune) -> RunConfig:
    return RunConfig(
        name="tiny",
        model=ModelConfig(width=16, depth=2, w0=30),
        meta=MetaConfig(inner_steps=2, outer_lr=1e-3, batch_size=2),
        data=DataConfig(path="unused"),
        train=TrainConfig(steps=6, log_every=2, checkpoint_every=3, device="cpu"),
        prune=PruneConfig(**prune) if prune else PruneConfig(),
    )


def make_trainer(config, run_dir, signals):
    return Trainer(config, run_dir, source=BatchSource(config.data, "cpu", signals=signals), device="cpu")


def final_state(trainer):
    return {f"{g}/{k}": v.clone() for g, d in trainer.learner.detached_meta().items() for k, v in d.items()}


@pytest.mark.parametrize("prune", [{}, {"rounds": 2, "steps_per_round": 3},
                                   {"rounds": 2, "steps_per_round": 3, "fresh_optimizer": True}])
def test_a_killed_run_resumes_to_the_same_parameters_bitwise(tmp_path, tiny_signals, prune):
    config = tiny_config(**prune)
    straight = make_trainer(config, tmp_path / "a", tiny_signals)
    straight.run()
    interrupted = make_trainer(config, tmp_path / "b", tiny_signals)
    interrupted.run(max_steps=3 if not prune else 7)  # killed after a checkpoint
    interrupted.save_checkpoint()
    resumed = make_trainer(config, tmp_path / "b", tiny_signals)
    assert resumed.try_resume()
    resumed.run()
    a, b = final_state(straight), final_state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    if prune:
        assert straight.round == resumed.round == 2
        assert (tmp_path / "a" / "round_02.safetensors").exists()


def test_pruning_rounds_follow_algorithm_1(tmp_path, tiny_signals):
    config = tiny_config(rounds=2, steps_per_round=2, fraction=0.2)
    trainer = make_trainer(config, tmp_path, tiny_signals)
    model = trainer.run()
    weights = sum(trainer.problem.model.dims_of(n)[0] * trainer.problem.model.dims_of(n)[1]
                  for n in trainer.problem.model.weight_names)
    kept = sum(int(m.sum()) for m in model.masks.values())
    after_one = weights - int(0.2 * weights)
    assert kept == after_one - int(0.2 * after_one)
    dense = MetaModel.load(tmp_path / "round_00.safetensors")
    assert dense.masks is None
    one = MetaModel.load(tmp_path / "round_01.safetensors")
    assert sum(int(m.sum()) for m in one.masks.values()) == after_one


def test_fresh_optimizer_starts_a_new_adam_when_pruning_begins(tmp_path, tiny_signals):
    def adam_steps(trainer):
        return sorted({int(state["step"]) for state in trainer.learner.optimizer.state.values()})

    finals = {}
    for fresh in (False, True):
        config = tiny_config(rounds=2, steps_per_round=3, fresh_optimizer=fresh)
        trainer = make_trainer(config, tmp_path / str(fresh), tiny_signals)
        trainer.run(max_steps=config.train.steps)  # the dense phase
        assert adam_steps(trainer) == [6]
        trainer.run(max_steps=1)  # prunes, then one step on the masked net
        assert adam_steps(trainer) == ([1] if fresh else [7])
        trainer.run(max_steps=3)  # the second round keeps the optimiser either way
        assert adam_steps(trainer) == ([4] if fresh else [10])
        trainer.run()
        finals[fresh] = final_state(trainer)
    assert any(not torch.equal(finals[False][k], finals[True][k]) for k in finals[False])


def test_resume_refuses_a_different_configuration(tmp_path, tiny_signals):
    trainer = make_trainer(tiny_config(), tmp_path, tiny_signals)
    trainer.run(max_steps=3)
    other = tiny_config()
    other = apply_overrides(other, ["model.width=32"])
    with pytest.raises(ConfigError):
        make_trainer(other, tmp_path, tiny_signals).try_resume()


def test_resume_accepts_the_same_run_with_its_data_elsewhere_or_another_engine(tmp_path, tiny_signals):
    trainer = make_trainer(tiny_config(), tmp_path, tiny_signals)
    trainer.run(max_steps=3)
    moved = apply_overrides(tiny_config(), ['data.path="elsewhere/photos"', "meta.fast_siren=false"])
    resumed = make_trainer(moved, tmp_path, tiny_signals)
    assert resumed.try_resume() and resumed.step == 3


def test_model_files_round_trip_and_bad_files_are_refused(tmp_path, tiny_signals):
    trainer = make_trainer(tiny_config(), tmp_path, tiny_signals)
    trainer.run()
    model = MetaModel.load(tmp_path / "model.safetensors")
    assert model.config == tiny_config()
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ModelError):
        MetaModel.load(tmp_path / "junk.safetensors")
    with pytest.raises(ModelError):
        MetaModel.load(tmp_path / "missing.safetensors")
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError):
        MetaModel.load(tmp_path / "cut.safetensors")


def test_overrides_are_typed_and_checked():
    c = apply_overrides(tiny_config(), ["meta.inner_lr=0.5", "model.w0=12", "train.device=cuda", "meta.compile=true"])
    assert c.meta.inner_lr == 0.5 and c.model.w0 == 12.0 and c.meta.compile is True
    assert RunConfig.from_dict(json.loads(c.to_json())) == c
    for bad in ["meta.nope=1", "nosection.x=1", "meta.inner_lr=abc", "novalue"]:
        with pytest.raises(ConfigError):
            apply_overrides(tiny_config(), [bad])


def test_a_run_past_its_deadline_stops_after_one_chunk_and_resumes_to_the_same_parameters(tmp_path, tiny_signals):
    config = tiny_config(rounds=1, steps_per_round=2)
    straight = make_trainer(config, tmp_path / "a", tiny_signals)
    straight.run(deadline=float("inf"))
    assert straight.step == 8
    budgeted = make_trainer(config, tmp_path / "b", tiny_signals)
    budgeted.run(deadline=0.0)  # long past: one chunk of train.log_every steps, then saved
    assert budgeted.step == config.train.log_every
    resumed = make_trainer(config, tmp_path / "b", tiny_signals)
    assert resumed.try_resume() and resumed.step == config.train.log_every
    assert (tmp_path / "b" / "model.safetensors").exists()
    resumed.run(deadline=float("inf"))
    a, b = final_state(straight), final_state(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_run_with_nothing_to_do_still_writes_its_model(tmp_path, tiny_signals):
    config = tiny_config()
    config = RunConfig.from_dict({**config.to_dict(), "train": {**config.to_dict()["train"], "steps": 0}})
    trainer = make_trainer(config, tmp_path, tiny_signals)
    trainer.run(deadline=float("inf"))
    assert trainer.step == 0 and (tmp_path / "model.safetensors").exists() and trainer.checkpoint_path.exists()
