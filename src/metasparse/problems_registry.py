"""Builds the meta-problem a run config names; extensions register more kinds here."""

from __future__ import annotations

from collections.abc import Callable

from metasparse.config import RunConfig
from metasparse.errors import ConfigError
from metasparse.meta.problems.base import MetaProblem, ModulationProblem, WeightsProblem
from metasparse.nn.siren import CoordinateNetwork, build_model

ProblemBuilder = Callable[[RunConfig, CoordinateNetwork, "dict | None"], MetaProblem]
_BUILDERS: dict[str, ProblemBuilder] = {}


def register_problem(kind: str, builder: ProblemBuilder) -> None:
    _BUILDERS[kind] = builder


def available_problems() -> list[str]:
    _load_extensions()
    return sorted(_BUILDERS)


def build_problem(config: RunConfig, masks=None) -> MetaProblem:
    _load_extensions()
    kind = config.problem.kind
    if kind not in _BUILDERS:
        raise ConfigError(f"unknown problem kind {kind!r}; available: {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[kind](config, build_model(config.model), masks)


def _weights(config: RunConfig, model, masks):
    m = config.meta
    return WeightsProblem(model, m.inner_lr, m.meta_sgd, tuple(m.meta_sgd_init), tuple(m.lr_clip), masks)


def _modulations(config: RunConfig, model, masks):
    m = config.meta
    latent = config.problem.latent_dim if config.problem.kind == "functa" else None
    if config.problem.kind == "functa" and not latent:
        raise ConfigError("problem.kind=functa needs problem.latent_dim")
    return ModulationProblem(model, latent, m.inner_lr, m.meta_sgd, tuple(m.meta_sgd_init), tuple(m.lr_clip))


register_problem("weights", _weights)
register_problem("functa", _modulations)
register_problem("modulations", _modulations)


def _load_extensions() -> None:
    # MSCN registers its gated problems on import; it is optional so the core stands alone.
    import importlib
    import importlib.util

    if importlib.util.find_spec("metasparse.meta.problems.gated") is not None:
        importlib.import_module("metasparse.meta.problems.gated")
