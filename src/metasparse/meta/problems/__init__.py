"""Meta-problems: what the inner loop adapts, and the registry of the kinds a run config can name.

This package owns ``PROBLEMS``: it imports every module that registers a known kind, so the registry
is complete whichever of its modules is imported first. An extension registers its own kinds with
``@PROBLEMS.register("name")`` on a builder ``(ProblemConfig, MetaConfig, network, masks) -> MetaProblem``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metasparse.errors import ConfigError
from metasparse.meta.problems import base, gated
from metasparse.meta.problems.base import (
    PROBLEMS,
    MetaProblem,
    ModulationProblem,
    ProblemBuilder,
    ProblemConfig,
    WeightsProblem,
)
from metasparse.nn.siren import ModelConfig, Params, build_model

if TYPE_CHECKING:  # the engine imports this package
    from metasparse.meta.engine import MetaConfig

__all__ = [
    "PROBLEMS",
    "MetaProblem",
    "ModulationProblem",
    "ProblemBuilder",
    "ProblemConfig",
    "WeightsProblem",
    "base",
    "build_problem",
    "gated",
]


def build_problem(problem: ProblemConfig, meta: MetaConfig, model: ModelConfig, masks: Params | None = None) -> MetaProblem:
    """The meta-problem ``problem.kind`` on a new network ``model``, set up with the ``meta`` settings and optional fixed weight ``masks``."""
    if problem.kind not in PROBLEMS:
        raise ConfigError(f"unknown problem kind {problem.kind!r}; available: {', '.join(sorted(PROBLEMS))}")
    return PROBLEMS.get(problem.kind)(problem, meta, build_model(model), masks)
