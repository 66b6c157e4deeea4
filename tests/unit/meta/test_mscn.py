import dataclasses

import pytest
import torch

from metasparse.config import ModelConfig, ProblemConfig, RunConfig, build_problem
from metasparse.data.signals import grid_coordinates
from metasparse.errors import ConfigError
from metasparse.meta.engine import MetaConfig, MetaLearner, adapted_losses, inner_loop, make_meta_gradient
from metasparse.meta.fit import FitConfig, fit_signals
from metasparse.meta.problems import PROBLEMS
from metasparse.meta.problems.gated import (
    GATE_META_KEY,
    GatedModulationProblem,
    GatedUpdatesProblem,
    GatedWeightsProblem,
    search_l0_weight,
)
from metasparse.nn.siren import build_model

KINDS = {"mscn-updates": GatedUpdatesProblem, "mscn-weights": GatedWeightsProblem,
         "mscn-modulations": GatedModulationProblem}


def data(n=3, side=4, dtype=torch.float32):
    coords = grid_coordinates((side, side)).reshape(-1, 2).to(dtype)
    targets = torch.rand(n, side * side, 3, generator=torch.Generator().manual_seed(1), dtype=dtype)
    return coords, targets


def make(cls, width=8, depth=2, **kw):
    return cls(build_model(ModelConfig(width=width, depth=depth, w0=30)), **kw)


def to64(meta):
    return {g: {k: v.double().clone() for k, v in d.items()} for g, d in meta.items()}


def test_gated_inner_loop_keeps_closed_entries_exactly_at_theta():
    problem = make(GatedUpdatesProblem, gate_init_keep=0.5)
    meta = problem.init_meta(torch.Generator().manual_seed(0))
    coords, targets = data()
    noise = problem.sample_noise(meta, torch.Generator().manual_seed(3))
    z = problem.gates(meta, noise)
    fast = inner_loop(problem, meta, coords, targets[0], noise, steps=3, first_order=False)
    closed = opened = 0
    for name, gate in z.items():
        delta = fast[name] - meta["theta"][name]
        assert torch.equal(delta[gate == 0], torch.zeros_like(delta[gate == 0])), name
        closed += int((gate == 0).sum())
        opened += int((delta != 0).sum())
    assert closed > 0 and opened > 0
    # the cost is the exact count of changed entries (ungated biases included)
    expected = sum(int((fast[k] - meta["theta"][k] != 0).sum()) for k in fast)
    assert problem.per_signal_cost(fast, meta).item() == expected


@pytest.mark.parametrize("kind", list(KINDS))
def test_meta_gradient_reaches_log_alpha_and_matches_finite_differences(kind):
    problem = make(KINDS[kind], width=4, depth=1, gate_init_keep=0.6, l0_weight=0.05)
    meta = to64(problem.init_meta(torch.Generator().manual_seed(0)))
    coords, targets = data(n=2, side=3, dtype=torch.float64)
    noise = problem.sample_noise(meta, torch.Generator().manual_seed(5))
    cfg = MetaConfig(inner_steps=2)
    grads, _ = make_meta_gradient(problem, cfg)(meta, coords, targets, noise)

    def objective(m):
        losses = adapted_losses(problem, m, coords, targets, noise, 2, False)
        return (losses.mean() + problem.regulariser(m, noise)).item()

    checked = 0
    for name, g in grads[GATE_META_KEY].items():
        assert torch.isfinite(g).all()
        flat = g.reshape(-1)
        for i in torch.argsort(flat.abs(), descending=True)[:3].tolist():
            eps = 1e-6
            plus, minus = to64(meta), to64(meta)
            plus[GATE_META_KEY][name].view(-1)[i] += eps
            minus[GATE_META_KEY][name].view(-1)[i] -= eps
            fd = (objective(plus) - objective(minus)) / (2 * eps)
            assert fd == pytest.approx(flat[i].item(), rel=1e-4, abs=1e-8), (name, i)
            checked += 1
        if checked >= 6:
            break
    assert any(g.abs().sum() > 0 for g in grads[GATE_META_KEY].values())


def test_l0_regulariser_lowers_expected_l0():
    problem = make(GatedUpdatesProblem, l0_weight=1.0)
    meta = problem.init_meta(torch.Generator().manual_seed(0))
    coords, targets = data()
    cfg = MetaConfig(inner_steps=1, outer_lr=1e-2, group_lr_multipliers=((GATE_META_KEY, 20.0),))
    learner = MetaLearner(problem, cfg, meta)
    before = problem.expected_l0(learner.meta).item()
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        learner.step(coords, targets, g)
    after = problem.expected_l0(learner.meta).item()
    assert after < 0.95 * before


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_trains_and_fits(kind):
    problem = make(KINDS[kind], gate_init_keep=0.5, l0_weight=0.01)
    meta = problem.init_meta(torch.Generator().manual_seed(0))
    coords, targets = data()
    learner = MetaLearner(problem, MetaConfig(inner_steps=2, outer_lr=1e-3), meta)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        losses = learner.step(coords, targets, g)
        assert losses.shape == (3,) and torch.isfinite(losses).all()
    lo, hi = problem.hard_concrete.log_alpha_range
    assert all(((v >= lo) & (v <= hi)).all() for v in learner.meta[GATE_META_KEY].values())
    trained = learner.detached_meta()
    for optimizer, lr in (("adam", 1e-3), ("inner", None)):
        cfg = FitConfig(steps=5, optimizer=optimizer, lr=lr or 0.0, batch_size=2)
        res = fit_signals(problem, trained, coords, targets, cfg)
        assert res.final_psnr.shape == (3,) and torch.isfinite(res.final_psnr).all()
        cost = problem.per_signal_cost(res.fast, trained)
        assert cost.shape == (3,)
        z = problem.test_gates(trained)
        if kind == "mscn-updates":  # closed test gates: the fitted δ is exactly zero there
            for name, gate in z.items():
                delta = res.fast[name] - trained["theta"][name]
                assert (delta[:, gate == 0] == 0).all()
            assert (cost <= sum(int((v != 0).sum()) for v in z.values()) + sum(
                res.fast[n][0].numel() for n in problem.model.bias_names)).all()
        if kind == "mscn-modulations":
            assert (res.fast["code"][:, z["code"] == 0] == 0).all()
            assert (cost == int((z["code"] != 0).sum())).all()


@pytest.mark.parametrize("budget", [0, 5, 13])
def test_modulation_budget_leaves_exactly_that_many_open(budget):
    problem = make(GatedModulationProblem, gate_init_keep=0.5, target_count=budget)
    meta = problem.init_meta(torch.Generator().manual_seed(0))
    coords, targets = data()
    z = problem.test_gates(meta)["code"]
    assert int((z != 0).sum()) == budget
    assert problem.kept_modulations(meta).numel() == budget
    kept = problem.kept_modulations(meta)
    top = torch.topk(meta[GATE_META_KEY]["code"], budget).indices
    assert set(kept.tolist()) == set(top.tolist())
    res = fit_signals(problem, meta, coords, targets, FitConfig(steps=3, lr=1e-2))
    assert (problem.per_signal_cost(res.fast, meta) == budget).all()
    assert ((res.fast["code"] != 0).sum(1) <= budget).all()


def test_regulariser_is_lambda_times_expected_fraction_open():
    problem = make(GatedUpdatesProblem, l0_weight=0.5, gate_biases=True)
    meta = problem.init_meta(torch.Generator().manual_seed(0))
    n = sum(v.numel() for v in meta["theta"].values())
    assert problem.num_gates(meta) == n
    expected = problem.expected_l0(meta) / n * 0.5
    assert torch.allclose(problem.regulariser(meta), expected)


def test_fixed_lr_option_and_clamp():
    problem = make(GatedUpdatesProblem, meta_sgd=False, inner_lr=0.1)
    meta = problem.init_meta(torch.Generator().manual_seed(0))
    assert "lrs" not in meta
    step = problem.step_size(meta, problem.eval_noise(meta))
    z = problem.test_gates(meta)
    assert torch.equal(step["layers.0.weight"], 0.1 * z["layers.0.weight"])
    meta[GATE_META_KEY]["layers.0.weight"].fill_(100.0)
    problem.project(meta)
    assert meta[GATE_META_KEY]["layers.0.weight"].max() == problem.hard_concrete.log_alpha_range[1]


def test_registry_builds_each_kind():
    assert set(KINDS) <= set(PROBLEMS.names())
    base = RunConfig(model=ModelConfig(width=8, depth=2, w0=30))
    for kind, cls in KINDS.items():
        cfg = dataclasses.replace(base, problem=ProblemConfig(kind=kind, l0_weight=0.01, target_count=3))
        problem = build_problem(cfg)
        assert isinstance(problem, cls) and problem.l0_weight == 0.01 and problem.target_count == 3
    bad = dataclasses.replace(base, problem=ProblemConfig(kind="mscn-updates", adapt_gates_inner=True))
    with pytest.raises(ConfigError):
        build_problem(bad)


def test_search_l0_weight():
    def count_for(lam):  # monotone decreasing count of open gates
        return int(1000 / (1 + 100 * lam))

    lam, count = search_l0_weight(count_for, target=100, low=1e-4, high=10.0, iterations=30)
    assert count >= 100 and count_for(lam * 1.05) <= count
    assert count - 100 <= 5


def test_the_gates_outer_lr_comes_from_the_problem_and_an_explicit_config_entry_wins():
    problem = make(GatedUpdatesProblem, gate_lr_multiplier=30.0)
    meta = problem.init_meta(torch.Generator().manual_seed(0))

    def gate_lr(config):
        groups = {group["name"]: group["lr"] for group in MetaLearner(problem, config, meta).optimizer.param_groups}
        return groups[GATE_META_KEY], groups["theta"]

    assert gate_lr(MetaConfig(outer_lr=1e-3)) == pytest.approx((3e-2, 1e-3))
    explicit = MetaConfig(outer_lr=1e-3, group_lr_multipliers=((GATE_META_KEY, 5.0),))
    assert gate_lr(explicit) == pytest.approx((5e-3, 1e-3))


def test_training_gates_respect_the_budget_and_still_train_the_kept_ones():
    problem = make(GatedModulationProblem, gate_init_keep=0.9, target_count=4)
    meta = problem.init_meta(torch.Generator().manual_seed(0))
    for seed in range(5):
        noise = problem.sample_noise(meta, torch.Generator().manual_seed(seed))
        z = problem.gates(meta, noise)["code"]
        assert int((z != 0).sum()) <= 4
        kept = torch.zeros_like(z, dtype=torch.bool)
        kept[torch.topk(meta[GATE_META_KEY]["code"], 4).indices] = True
        assert (z[~kept] == 0).all()
    la = meta[GATE_META_KEY]["code"].clone().requires_grad_(True)
    z = problem.gates({**meta, GATE_META_KEY: {"code": la}}, noise)["code"]
    (g,) = torch.autograd.grad(z.sum(), la)
    assert (g[~kept] == 0).all() and (g[kept] != 0).any()


def test_annealed_training_budget_shrinks_from_every_gate_to_the_target():
    problem = make(GatedModulationProblem, gate_init_keep=0.9, target_count=4)  # 16 modulations
    problem.budget_anneal_steps = 10
    meta = problem.init_meta(torch.Generator().manual_seed(0))
    n = problem.num_gates(meta)
    open_counts = []
    for step in (0, 5, 10, 50):
        problem.set_step(step, n)
        z = problem.gates(meta, problem.sample_noise(meta, torch.Generator().manual_seed(step)))["code"]
        open_counts.append(int((z != 0).sum()))
        assert problem._training_budget == (4 + round(12 * (1 - step / 10) ** 3) if step < 10 else 4)
    assert open_counts[0] > 4 and open_counts[-2] <= 4 and open_counts[-1] <= 4
    # Test-time gates always take the target, whatever the training budget.
    problem.set_step(0, n)
    assert int((problem.test_gates(meta)["code"] != 0).sum()) == 4


def test_the_trainer_anneals_the_budget_and_ends_at_the_target(tmp_path):
    from metasparse.config import DataConfig, TrainConfig
    from metasparse.training.trainer import Trainer

    config = RunConfig(
        model=ModelConfig(width=8, depth=2, w0=30.0),
        problem=ProblemConfig(kind="mscn-modulations", target_count=4, budget_anneal_steps=3, l0_weight=0.01),
        meta=MetaConfig(inner_steps=1, meta_sgd=True, batch_size=2),
        data=DataConfig(path="samples", transform="resize:8"),
        train=TrainConfig(steps=4, log_every=2, checkpoint_every=2, device="cpu"),
    )
    trainer = Trainer(config, tmp_path)
    seen = []
    original = trainer.problem.set_step
    trainer.problem.set_step = lambda step, n: (original(step, n), seen.append(trainer.problem._training_budget))
    trainer.run()
    assert seen[0] == 16 and seen[-1] == 4 and seen == sorted(seen, reverse=True)


def test_train_budgets_cycle_through_nested_top_k_gates():
    config = RunConfig(model=ModelConfig(width=8, depth=2, w0=30.0),
                       problem=ProblemConfig(kind="mscn-modulations", train_budgets=(2, 8)),
                       meta=MetaConfig(meta_sgd=True))
    problem = build_problem(config, None)
    meta = problem.init_meta(torch.Generator().manual_seed(0))
    order = torch.argsort(meta[GATE_META_KEY]["code"], descending=True)
    for step, budget in ((0, 2), (1, 8), (2, 2), (7, 8)):
        problem.set_step(step, problem.num_gates(meta))
        z = problem.gates(meta, problem.sample_noise(meta, torch.Generator().manual_seed(step)))["code"]
        assert set(torch.nonzero(z).flatten().tolist()) <= set(order[:budget].tolist())
    bigger = dataclasses.replace(config, problem=dataclasses.replace(config.problem, train_budgets=(2, 99)))
    assert build_problem(bigger, None).train_budgets == (2, 16)  # above the 16 gates: all of them
    with pytest.raises(ConfigError, match="train_budgets"):
        build_problem(dataclasses.replace(config, problem=dataclasses.replace(config.problem, train_budgets=(0,))),
                      None)
