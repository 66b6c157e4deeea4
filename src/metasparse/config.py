"""Typed run configurations: a run is reproducible from its saved config and seed.

``RunConfig`` nests one dataclass per concern (model, meta-problem, meta-learning, data,
training, evaluation). Presets are named ``RunConfig`` instances (``metasparse.presets``);
``--set section.field=value`` overrides are parsed against the field types, so a typo is an error
rather than a silently ignored key.

Every field has a set of allowed values (``ALLOWED`` below, or the ``Literal`` of its type), and
:meth:`RunConfig.validate` checks all of them, plus the combinations that would otherwise be
silently ignored, before any work: :func:`apply_overrides`, :meth:`RunConfig.from_dict` and the
trainer call it, so ``meta.algorithm=fomal`` is refused at once rather than trained as MAML.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from metasparse.data.config import DataConfig
from metasparse.errors import ConfigError
from metasparse.meta import problems
from metasparse.meta.engine import MetaConfig
from metasparse.meta.fit import FitConfig
from metasparse.meta.problems import PROBLEMS, MetaProblem, ProblemConfig
from metasparse.modalities import MODALITIES
from metasparse.nn.siren import ModelConfig
from metasparse.utils.device import is_device_name

# The only problem kind whose weights the trainer prunes (Meta-SparseINR's Algorithm 1).
PRUNABLE_KINDS = ("weights",)


@dataclass(frozen=True)
class PruneConfig:
    """Meta-SparseINR's Algorithm 1: after ``train.steps`` dense steps, ``rounds`` rounds of
    removing ``fraction`` of the surviving weights, each followed by ``steps_per_round`` steps.
    ``fresh_optimizer``: start a new outer Adam (no moments, step count 0) when pruning begins, as the
    official Meta-SparseINR code does; by default the dense phase's Adam state carries on."""

    rounds: int = 0
    fraction: float = 0.2
    steps_per_round: int = 0
    method: Literal["magnitude", "random"] = "magnitude"
    fresh_optimizer: bool = False


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    seed: int = 0
    device: str = "auto"
    log_every: int = 50
    checkpoint_every: int = 500


# Fields that nothing read and were removed; config files written before still load (they are skipped).
REMOVED_FIELDS: dict[type, frozenset[str]] = {
    DataConfig: frozenset({"patches_per_epoch"}),
    TrainConfig: frozenset({"val_every", "val_signals"}),
}


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
        """A config from its JSON form, validated; fields removed since it was written are skipped."""
        return _from_dict(cls, d, "").validate()

    def validate(self) -> RunConfig:
        """Raise ``ConfigError`` (one line: the field, its value, what is allowed) or return ``self``."""
        validate_section(self)
        _check_combinations(self)
        return self


def build_problem(config: RunConfig, masks=None) -> MetaProblem:
    """The meta-problem a run configuration describes, on a new network, with optional weight ``masks``."""
    return problems.build_problem(config.problem, config.meta, config.model, masks)


# ------------------------------------------------------------------------------ allowed values


_UNION_TYPES = (typing.Union, types.UnionType)


def _shown(value) -> str:
    """A value as the user writes it in ``--set`` and config.json (JSON)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _invalid(path: str, value, expected: str) -> ConfigError:
    return ConfigError(f"invalid {path} = {_shown(value)}: expected {expected}")


@dataclass(frozen=True)
class Allowed:
    """The values a field accepts; the error message shows ``description`` (a registry's choices are
    read when the message is made, so that kinds registered by extensions are listed)."""

    describe: str | Callable[[], str]
    accepts: Callable[[Any], bool]

    @property
    def description(self) -> str:
        return self.describe if isinstance(self.describe, str) else self.describe()


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def count(minimum: int) -> Allowed:
    return Allowed(f"an integer >= {minimum}", lambda v: _is_int(v) and v >= minimum)


def one_of(*choices) -> Allowed:
    return Allowed("one of " + ", ".join(_shown(c) for c in choices),
                   lambda v: any(v == c and type(v) is type(c) for c in choices))


def optional(rule: Allowed) -> Allowed:
    return Allowed(f"null or {rule.description}", lambda v: v is None or rule.accepts(v))


def each(rule: Allowed) -> Allowed:
    return Allowed(f"a list, each item {rule.description}",
                   lambda v: isinstance(v, (tuple, list)) and all(rule.accepts(x) for x in v))


def ordered_pair(rule: Allowed) -> Allowed:
    return Allowed(f"[low, high] with low <= high, each {rule.description}",
                   lambda v: isinstance(v, (tuple, list)) and len(v) == 2 and all(rule.accepts(x) for x in v)
                   and v[0] <= v[1])


FLAG = Allowed("true or false", lambda v: isinstance(v, bool))
TEXT = Allowed("a string", lambda v: isinstance(v, str))
NAME = Allowed("a non-empty string", lambda v: isinstance(v, str) and v.strip() != "")
FINITE = Allowed("a finite number", _is_number)
POSITIVE = Allowed("a finite number > 0", lambda v: _is_number(v) and v > 0)
NON_NEGATIVE = Allowed("a finite number >= 0", lambda v: _is_number(v) and v >= 0)
OPEN_UNIT = Allowed("a number strictly between 0 and 1", lambda v: _is_number(v) and 0 < v < 1)
DECAY = Allowed("a number >= 0 and < 1", lambda v: _is_number(v) and 0 <= v < 1)
GROUP_MULTIPLIER = Allowed(
    "a [group name, finite number > 0] pair",
    lambda v: isinstance(v, (tuple, list)) and len(v) == 2 and NAME.accepts(v[0]) and POSITIVE.accepts(v[1]),
)


def _problem_kinds() -> list[str]:
    return sorted(PROBLEMS)


def _modalities() -> list[str]:
    # Images go through the image pipeline; every other modality needs its own loader.
    return ["image", *sorted(name for name, m in MODALITIES.items() if name != "image" and m.load is not None)]


def _registered(choices: Callable[[], list[str]]) -> Allowed:
    return Allowed(lambda: one_of(*choices()).description, lambda v: isinstance(v, str) and v in choices())


DEVICE = Allowed("auto, cpu, cuda, cuda:N or another torch device name", is_device_name)
PROBLEM_KIND = _registered(_problem_kinds)
MODALITY = _registered(_modalities)

# Every field of every section. A ``Literal`` type states its choices itself.
ALLOWED: dict[type, dict[str, Allowed]] = {
    RunConfig: {"name": NAME, "description": TEXT},
    ModelConfig: {
        "kind": one_of("siren", "ffn"), "in_dim": count(1), "out_dim": count(1), "width": count(1),
        "depth": count(1), "w0": POSITIVE, "w0_first": optional(POSITIVE),
        "bias_init": one_of("uniform", "zeros"), "output_offset": FINITE, "fourier_sigma": POSITIVE,
        "fourier_seed": count(0),
    },
    ProblemConfig: {
        "kind": PROBLEM_KIND, "latent_dim": optional(count(1)), "l0_weight": NON_NEGATIVE,
        "gate_init_keep": OPEN_UNIT, "gate_lr_multiplier": POSITIVE, "gate_biases": FLAG,
        # Per-signal gate patterns are not implemented; the field keeps old model files (and their ids) valid.
        "adapt_gates_inner": one_of(False), "target_count": optional(count(1)),
        "budget_anneal_steps": count(0), "train_budgets": each(count(1)),
    },
    MetaConfig: {
        "inner_steps": count(1), "inner_lr": POSITIVE, "meta_sgd": FLAG,
        "meta_sgd_init": ordered_pair(NON_NEGATIVE), "lr_clip": ordered_pair(NON_NEGATIVE),
        "outer_lr": POSITIVE,
        "lr_lr": optional(POSITIVE), "group_lr_multipliers": each(GROUP_MULTIPLIER),
        "grad_clip": optional(POSITIVE), "batch_size": count(1), "compile": FLAG, "tf32": FLAG, "fast_siren": FLAG,
    },
    DataConfig: {
        "path": NAME, "transform": optional(TEXT), "split": optional(TEXT), "limit": optional(count(1)),
        "patch": optional(count(1)), "modality": MODALITY, "extra_paths": each(NAME),
    },
    PruneConfig: {"rounds": count(0), "fraction": OPEN_UNIT, "steps_per_round": count(0), "fresh_optimizer": FLAG},
    TrainConfig: {"steps": count(0), "seed": count(0), "device": DEVICE, "log_every": count(1),
                  "checkpoint_every": count(1)},
    FitConfig: {"steps": count(0), "lr": POSITIVE, "ema_decay": optional(DECAY), "batch_size": count(1)},
}


def allowed_values(cls: type, name: str) -> Allowed:
    """What field ``name`` of section ``cls`` accepts."""
    hint = typing.get_type_hints(cls)[name]
    if typing.get_origin(hint) is Literal:
        return one_of(*typing.get_args(hint))
    try:
        return ALLOWED[cls][name]
    except KeyError:
        raise AssertionError(f"{cls.__name__}.{name} has no entry in metasparse.config.ALLOWED") from None


def _section_type(hint) -> type | None:
    """The dataclass a (possibly optional) field holds, or None for a plain value."""
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in _UNION_TYPES:
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            return inner[0]
    return None


def validate_section(section, where: str = "") -> None:
    """Check every field of ``section`` (a config dataclass) and of the sections nested in it."""
    cls = type(section)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        value = getattr(section, f.name)
        path = f"{where}{f.name}"
        nested = _section_type(hints[f.name])
        if nested is not None:
            if value is None and nested is not hints[f.name]:
                continue
            if not isinstance(value, nested):
                raise _invalid(path, value, f"a {nested.__name__} section")
            validate_section(value, path + ".")
            continue
        rule = allowed_values(cls, f.name)
        if not rule.accepts(value):
            raise _invalid(path, value, rule.description)


def _check_combinations(config: RunConfig) -> None:
    """Settings that are each valid but would be silently ignored together."""
    problem, prune = config.problem, config.prune
    if prune.rounds > 0 and problem.kind not in PRUNABLE_KINDS:
        raise ConfigError(
            f"invalid prune.rounds = {prune.rounds}: problem.kind {_shown(problem.kind)} cannot be pruned "
            f"(only {', '.join(map(_shown, PRUNABLE_KINDS))} can); expected 0"
        )
    if prune.rounds > 0 and prune.steps_per_round == 0:
        raise ConfigError(
            f"invalid prune.steps_per_round = 0 with prune.rounds = {prune.rounds}: expected an integer >= 1"
        )
    if problem.kind == "functa" and problem.latent_dim is None:
        raise ConfigError('invalid problem.latent_dim = null: problem.kind "functa" needs an integer >= 1')
    if problem.kind != "functa" and problem.latent_dim is not None:
        raise ConfigError(
            f'invalid problem.latent_dim = {problem.latent_dim}: only problem.kind "functa" has a latent; '
            "expected null"
        )
    data = config.data
    if data.extra_paths and (data.modality != "image" or data.path == "samples"):
        raise ConfigError(f"invalid data.extra_paths = {_shown(list(data.extra_paths))}: only image folders or "
                          f"files can be mixed (not modality {_shown(data.modality)} or path \"samples\"); expected []")
    if config.val_data is not None and config.val_data.extra_paths:
        raise ConfigError(f"invalid val_data.extra_paths = {_shown(list(config.val_data.extra_paths))}: validation "
                          "reads one folder or file; expected []")
    if config.meta.algorithm == "reptile" and problem.kind != "weights":
        raise ConfigError(
            f'invalid meta.algorithm = "reptile" with problem.kind {_shown(problem.kind)}: '
            'Reptile only moves the weights; expected "maml" or "fomaml"'
        )


# ------------------------------------------------------------------------------ parsing


def _from_dict(cls, d: dict[str, Any], where: str):
    if not isinstance(d, dict):
        where_shown = where.rstrip(".") or "config"
        raise ConfigError(f"invalid {where_shown}: expected a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    removed = REMOVED_FIELDS.get(cls, frozenset())
    kwargs = {}
    for k, v in d.items():
        if k in removed:
            continue
        if k not in names:
            raise ConfigError(f"unknown config field {where}{k}; expected one of {', '.join(sorted(names))}")
        value = _coerce_value(hints[k], v, f"{where}{k}")
        if _section_type(hints[k]) is None:  # checked before the class sees it (its own checks are terser)
            rule = allowed_values(cls, k)
            if not rule.accepts(value):
                raise _invalid(f"{where}{k}", value, rule.description)
        kwargs[k] = value
    return cls(**kwargs)


def _coerce_value(tp, value, where: str):
    """``value`` (from JSON) as type ``tp``; only lossless conversions (no bool as a number)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in _UNION_TYPES:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce_value(inner[0], value, where)
    if value is None:
        raise ConfigError(f"invalid {where} = null: a value is required")
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where + ".")
    if origin is Literal:
        return value  # the choices are checked by validate(), which lists them
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _invalid(where, value, "a list")
        if args and args[-1] is Ellipsis:
            return tuple(_coerce_value(args[0], v, where) for v in value)
        if len(value) != len(args):
            raise _invalid(where, value, f"a list of {len(args)} values")
        return tuple(_coerce_value(a, v, where) for a, v in zip(args, value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "false", "no", "off"):
            return value.lower() in ("true", "yes", "on")
        raise _invalid(where, value, "true or false")
    if tp is int:
        if _is_int(value):
            return value
        if isinstance(value, float) and not isinstance(value, bool) and value.is_integer():
            return int(value)
        raise _invalid(where, value, "an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise _invalid(where, value, "a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise _invalid(where, value, "a string")
    return value


def _parse_override(tp, raw: str):
    """An override's text as JSON, except that a text field takes the text as written (``name=5``)."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    optional_type = typing.get_origin(tp) in _UNION_TYPES
    inner = [a for a in typing.get_args(tp) if a is not type(None)] if optional_type else [tp]
    textual = inner and (inner[0] is str or (typing.get_origin(inner[0]) is Literal
                                             and all(isinstance(c, str) for c in typing.get_args(inner[0]))))
    if textual and not isinstance(value, str) and value is not None:
        return raw
    return value


def apply_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.field=value`` strings (``value`` parsed as JSON when it parses); the result is
    validated, so an override outside a field's allowed values is a ``ConfigError``."""
    d = config.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.field=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        cls, node = RunConfig, d
        for part in parts[:-1]:
            hints = typing.get_type_hints(cls)
            section = _section_type(hints[part]) if part in hints else None
            if section is None and part in hints:
                raise ConfigError(f"invalid override {key!r}: {part!r} is a field, not a section")
            if section is None:
                sections = ", ".join(name for name, hint in hints.items() if _section_type(hint) is not None)
                raise ConfigError(f"unknown config section {part!r} in {key!r}; expected one of {sections}")
            if node[part] is None:  # an unset optional section (val_data) starts from its defaults
                node[part] = {}
            cls, node = section, node[part]
        hints = typing.get_type_hints(cls)
        if parts[-1] not in hints:
            raise ConfigError(f"unknown config field {key!r}; expected one of {', '.join(hints)}")
        node[parts[-1]] = _parse_override(hints[parts[-1]], raw)
    return RunConfig.from_dict(d)
