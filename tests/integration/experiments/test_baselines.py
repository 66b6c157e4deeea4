from dataclasses import replace

import pytest
import torch

from metasparse.config import DataConfig, PruneConfig, RunConfig, TrainConfig
from metasparse.data.signals import SignalSet, grid_coordinates
from metasparse.evaluation import count_parameters
from metasparse.experiments import baselines
from metasparse.meta.engine import MetaConfig
from metasparse.meta.fit import FitConfig
from metasparse.modalities.loading import BatchSource
from metasparse.nn.siren import CoordinateNetwork, ModelConfig
from metasparse.sparsity.pruning import surviving_after_rounds
from metasparse.training.trainer import Trainer


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    up = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (up.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()

TINY = ModelConfig(width=8, depth=2, w0=30.0)


def tiny_config(rounds=2, method="magnitude") -> RunConfig:
    return RunConfig(
        model=TINY,
        meta=MetaConfig(inner_steps=1, outer_lr=1e-4, batch_size=2),
        data=DataConfig(path="synthetic"),
        prune=PruneConfig(rounds=rounds, fraction=0.2, steps_per_round=2, method=method),
        train=TrainConfig(steps=3, device="cpu", log_every=1, checkpoint_every=100),
        fit=FitConfig(steps=6, lr=1e-3, batch_size=4),
    )


def signals(n=4, size=6) -> SignalSet:
    return SignalSet(smooth_images(n, size), grid_coordinates((size, size)), 1 / 255, [f"s{i}" for i in range(n)])


def test_weight_counts_and_widths():
    assert baselines.siren_weight_count(256, 4) == 197_888
    assert baselines.siren_weight_count(48, 4) == 7_152
    paper = CoordinateNetwork(ModelConfig(width=256, depth=4))
    assert sum(paper.init(torch.Generator().manual_seed(0))[n].numel() for n in paper.bias_names) == 1_027
    assert baselines.narrow_widths(ModelConfig(), 15)[-1] == 48
    assert baselines.narrow_widths(ModelConfig(), 15) == list(baselines.PAPER_WIDTHS[:16])
    widths = baselines.narrow_widths(ModelConfig(width=64, depth=4), 4)
    total = CoordinateNetwork(ModelConfig(width=64, depth=4)).num_weights()
    assert widths[0] == 64 and widths == sorted(widths, reverse=True)
    for k, w in enumerate(widths):
        target = surviving_after_rounds(total, k)
        err = abs(baselines.siren_weight_count(w, 4) - target)
        assert err <= min(abs(baselines.siren_weight_count(w + d, 4) - target) for d in (-1, 1))


def test_dense_narrow_and_scratch_counts():
    cfg = tiny_config()
    narrow = baselines.dense_narrow_config(cfg, 5)
    assert narrow.model.width == 5 and narrow.prune.rounds == 0
    model = baselines.scratch_model(cfg, 5, seed=0)
    assert count_parameters(model) == (50, 13)  # weights 2x5 + 5x5 + 5x3, biases 5 + 5 + 3
    assert baselines.siren_weight_count(5, 2) == 50
    again = baselines.scratch_model(cfg, 5, seed=0)
    assert torch.equal(model.meta["theta"]["layers.1.weight"], again.meta["theta"]["layers.1.weight"])


@pytest.mark.parametrize("prunes", [1, 2, 3])
def test_imp_and_one_shot_counts(prunes):
    model = CoordinateNetwork(TINY)
    theta = model.init(torch.Generator().manual_seed(0))
    s = signals()
    coords, targets = s.flat_coords(), s.targets()
    fit = FitConfig(steps=9, lr=1e-3, batch_size=3)  # two chunks: 3 + 1 signals
    expected = surviving_after_rounds(model.num_weights(), prunes)
    imp = baselines.fit_imp(model, theta, coords, targets, prunes, fit)
    assert imp.psnr_per_step.shape == (10, 4)
    assert imp.nonzero_weights.tolist() == [expected] * 4
    assert imp.biases == 8 + 8 + 3
    for i in range(4):  # the fitted parameters have exactly the masked-out zeros
        nz = sum(int((imp.params[n][i] != 0).sum()) for n in model.weight_names)
        assert nz == expected
    one = baselines.fit_one_shot(model, theta, coords, targets, expected, fit)
    assert one.nonzero_weights.tolist() == [expected] * 4
    assert torch.isfinite(one.final_psnr).all()
    # per-signal masks differ between signals (each signal is pruned on its own weights)
    m = imp.masks["layers.1.weight"]
    assert m.shape == (4, 8, 8)


def test_imp_phases():
    assert baselines.imp_phases(100, 1) == [50, 50]
    assert baselines.imp_phases(100, 3) == [25, 25, 25, 25]
    assert baselines.imp_phases(100, 15) == [6] * 15 + [10]


def test_pruned_fit_matches_plain_fit_without_pruning():
    from metasparse.meta.fit import fit_signals
    from metasparse.meta.problems.base import WeightsProblem

    model = CoordinateNetwork(TINY)
    theta = model.init(torch.Generator().manual_seed(1))
    s = signals(3)
    fit = FitConfig(steps=5, lr=1e-3, batch_size=3)
    ours = baselines.fit_with_pruning(model, theta, s.flat_coords(), s.targets(), [5], None, fit)
    ref = fit_signals(WeightsProblem(model), {"theta": theta}, s.flat_coords(), s.targets(), fit)
    assert torch.allclose(ours.psnr_per_step, ref.psnr_per_step, atol=1e-4)


@pytest.mark.parametrize("method", ["magnitude", "random"])
def test_trainer_round_counts(tmp_path, method):
    cfg = tiny_config(rounds=2, method=method)
    if method == "random":
        cfg = baselines.random_pruning_config(replace(cfg, prune=replace(cfg.prune, method="magnitude")))
    assert cfg.prune.method == method
    s = signals()
    trainer = Trainer(cfg, tmp_path, source=BatchSource(cfg.data, "cpu", signals=s), device="cpu")
    trainer.run()
    total = CoordinateNetwork(TINY).num_weights()
    from metasparse.training.model_file import MetaModel

    for k in range(3):
        nz, _ = count_parameters(MetaModel.load(tmp_path / f"round_{k:02d}.safetensors"))
        assert nz == surviving_after_rounds(total, k)
