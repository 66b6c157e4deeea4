"""Typed run configurations: a run is reproducible from its saved config and seed.

``RunConfig`` nests one dataclass per concern (model, meta-problem, meta-learning, data,
training, evaluation). Presets are named ``RunConfig`` instances (``metasparse.presets``);
``--set section.field=value`` overrides are parsed against the field types, so a typo is an error
rather than a silently ignored key.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .meta.engine import MetaConfig
from .meta.fit import FitConfig
from .models.siren import ModelConfig


@dataclass(frozen=True)
class ProblemConfig:
    """What the inner loop adapts. ``kind``: ``weights`` (MAML / Meta-SparseINR), ``functa``
    (latent → shifts), ``modulations`` (shifts adapted directly), or a kind registered by an
    extension (``mscn-updates``, ``mscn-weights``, ``mscn-modulations``)."""

    kind: str = "weights"
    latent_dim: int | None = None
    l0_weight: float = 0.0
    gate_init_keep: float = 0.9
    gate_lr_multiplier: float = 10.0
    gate_biases: bool = False
    adapt_gates_inner: bool = False
    target_count: int | None = None
    # Outer steps over which the training budget shrinks from every gate to target_count
    # (cubic, as gradual pruning), so gates compete before the cut; 0: the cut from step 0.
    budget_anneal_steps: int = 0
    # Several rates from one network (a codec's quality levels): the training budget cycles through
    # these over the outer steps, always the top-k gates, so every nested prefix is trained.
    train_budgets: tuple[int, ...] = ()


@dataclass(frozen=True)
class DataConfig:
    """Where signals come from. ``path``: a folder, file, ``.npz``, or ``samples`` (the photos that
    scikit-image ships). ``patch``: train on random ``patch`` x ``patch`` crops instead of whole
    images (``patches_per_epoch`` of them, redrawn from ``seed``)."""

    path: str = "samples"
    transform: str | None = None
    split: str | None = None
    limit: int | None = None
    patch: int | None = None
    patches_per_epoch: int = 4096
    modality: str = "image"


@dataclass(frozen=True)
class PruneConfig:
    """Meta-SparseINR's Algorithm 1: after ``train.steps`` dense steps, ``rounds`` rounds of
    removing ``fraction`` of the surviving weights, each followed by ``steps_per_round`` steps."""

    rounds: int = 0
    fraction: float = 0.2
    steps_per_round: int = 0
    method: str = "magnitude"  # "magnitude" | "random"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    seed: int = 0
    device: str = "auto"
    log_every: int = 50
    checkpoint_every: int = 500
    val_every: int = 0
    val_signals: int = 8


@dataclass(frozen=True)
class RunConfig:
    name: str = "custom"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    problem: ProblemConfig = field(default_factory=ProblemConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    data: DataConfig = field(default_factory=DataConfig)
    val_data: DataConfig | None = None
    prune: PruneConfig = field(default_factory=PruneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fit: FitConfig = field(default_factory=FitConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return _from_dict(cls, d)


def _from_dict(cls, d: dict[str, Any]):
    if not isinstance(d, dict):
        raise ConfigError(f"expected a mapping for {cls.__name__}, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    for k, v in d.items():
        if k not in names:
            raise ConfigError(f"unknown field {cls.__name__}.{k}")
        kwargs[k] = _coerce_value(hints[k], v, f"{cls.__name__}.{k}")
    return cls(**kwargs)


def _coerce_value(tp, value, where: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None:
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
            return None
        raise ConfigError(f"{where} cannot be None")
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in args if a is not type(None)]
        return _coerce_value(inner[0], value, where)
    if origin is tuple:
        if args and args[-1] is Ellipsis:
            return tuple(_coerce_value(args[0], v, where) for v in value)
        return tuple(_coerce_value(a, v, where) for a, v in zip(args, value))
    if tp is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return bool(value)
    if tp in (int, float, str):
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from None
    return value


def apply_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.field=value`` strings (``value`` parsed as JSON when it parses)."""
    d = config.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.field=value")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = d
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if p not in node:
                raise ConfigError(f"unknown config section {p!r} in {key!r}")
            if node[p] is None:
                node[p] = {}
            node = node[p]
        if not isinstance(node, dict) or parts[-1] not in node and parts[0] != "val_data":
            raise ConfigError(f"unknown config field {key!r}")
        node[parts[-1]] = value
    if d.get("val_data") == {}:
        d["val_data"] = None
    return RunConfig.from_dict(d)
