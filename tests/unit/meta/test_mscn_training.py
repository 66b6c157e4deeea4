"""MSCN through the Trainer: gates get their own outer learning rate and resume bitwise."""

import pytest
import torch

from metasparse.config import DataConfig, ProblemConfig, RunConfig, TrainConfig
from metasparse.meta.engine import MetaConfig
from metasparse.meta.problems.gated import GATE_META_KEY
from metasparse.modalities.loading import BatchSource
from metasparse.nn.siren import ModelConfig
from metasparse.training.trainer import Trainer


def gated_config(kind: str) -> RunConfig:
    return RunConfig(
        model=ModelConfig(width=8, depth=2, w0=30),
        problem=ProblemConfig(kind=kind, l0_weight=0.1, gate_lr_multiplier=7.0),
        meta=MetaConfig(inner_steps=2, outer_lr=1e-3, batch_size=2, meta_sgd=True),
        data=DataConfig(path="unused"),
        train=TrainConfig(steps=6, log_every=2, checkpoint_every=3, device="cpu"),
    )


def trainer_for(config, run_dir, signals):
    return Trainer(config, run_dir, source=BatchSource(config.data, "cpu", signals=signals), device="cpu")


def test_gate_locations_get_the_multiplied_outer_lr(tmp_path, tiny_signals):
    trainer = trainer_for(gated_config("mscn-modulations"), tmp_path, tiny_signals)
    lrs = {group.get("name", i): group["lr"] for i, group in enumerate(trainer.learner.optimizer.param_groups)}
    assert 7e-3 in [pytest.approx(v) for v in lrs.values()]
    assert GATE_META_KEY in trainer.learner.meta


@pytest.mark.parametrize("kind", ["mscn-updates", "mscn-modulations"])
def test_gated_runs_resume_bitwise(tmp_path, tiny_signals, kind):
    config = gated_config(kind)
    straight = trainer_for(config, tmp_path / "a", tiny_signals)
    straight.run()
    interrupted = trainer_for(config, tmp_path / "b", tiny_signals)
    interrupted.run(max_steps=3)
    resumed = trainer_for(config, tmp_path / "b", tiny_signals)
    assert resumed.try_resume()
    resumed.run()
    a, b = straight.learner.detached_meta(), resumed.learner.detached_meta()
    for group in a:
        for name in a[group]:
            assert torch.equal(a[group][name], b[group][name]), f"{group}/{name}"
    initial = trainer_for(config, tmp_path / "c", tiny_signals).learner.detached_meta()[GATE_META_KEY]
    assert any(not torch.equal(initial[n], a[GATE_META_KEY][n]) for n in initial), "gates were not trained"
