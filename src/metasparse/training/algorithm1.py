"""Meta-SparseINR's Algorithm 1, the schedule and the pruning step, read top to bottom like the paper:

1. meta-train the dense network for ``train.steps`` outer steps (MAML, Eq. 5);
2. then, ``prune.rounds`` times: remove the fraction ``prune.fraction`` of the surviving weights with the
   smallest magnitude, over all layers at once (``prune_round``), and meta-train the masked network for
   ``prune.steps_per_round`` more outer steps, keeping the outer Adam state (``prune.fresh_optimizer``: a new
   Adam when pruning begins, as the official code).

``Trainer`` runs the outer steps and calls these at the right step; Random Pruning is the same with random
scores.
"""

from __future__ import annotations

import torch

from metasparse.config import RunConfig
from metasparse.errors import ConfigError
from metasparse.sparsity import pruning


def total_steps(config: RunConfig) -> int:
    return config.train.steps + config.prune.rounds * config.prune.steps_per_round


def phase_of(config: RunConfig, step: int) -> int:
    """Pruning round in force at outer step ``step`` (0 = dense)."""
    if step < config.train.steps or config.prune.steps_per_round <= 0:
        return 0
    return min(config.prune.rounds, 1 + (step - config.train.steps) // config.prune.steps_per_round)


def needs_prune(config: RunConfig, supports_pruning: bool, step: int, done_rounds: int) -> bool:
    """Whether outer step ``step`` starts a pruning round that has not been done yet."""
    if config.prune.rounds == 0 or not supports_pruning:
        return False
    return phase_of(config, step) > done_rounds


def prune_round(config: RunConfig, theta: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None,
                prunable: list[str], step: int) -> dict[str, torch.Tensor]:
    """One round of Algorithm 1's lines 4-6: the new masks after removing ``prune.fraction`` of the survivors."""
    masks = masks or {n: torch.ones_like(theta[n]) for n in prunable}
    fraction = config.prune.fraction
    if config.prune.method == "magnitude":
        return pruning.global_magnitude_prune(theta, masks, fraction, prunable=prunable)
    if config.prune.method == "random":
        generator = torch.Generator().manual_seed(config.train.seed * 1000 + phase_of(config, step))
        return pruning.random_prune(masks, fraction, generator)
    raise ConfigError(f"unknown pruning method {config.prune.method!r}")
