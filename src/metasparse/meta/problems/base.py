"""What the inner loop adapts, and the loss it adapts it on.

A *meta-problem* separates the meta-learned state ``meta`` (a dict of tensors, learned in the
outer loop) from the per-signal *fast* state that the inner loop adapts, so one engine serves
MAML on all weights (Meta-SparseINR), gated updates (MSCN), and modulations (Functa, MSCN):

    fast_0     = init_fast(meta)
    fast_{k+1} = fast_k - step_size(meta, noise) ⊙ ∇_fast loss(fast_k, meta, coords, y)
    outer      = mean_signals loss(fast_K, meta, coords, y) + regulariser(meta, noise)

Every method is a pure function of its arguments (no state on ``self`` changes), so the engine can
``vmap`` over signals and ``grad`` through the whole inner loop. The trainer talks to a problem only
through the hooks documented on :class:`MetaProblem` (pruning, per-step schedules, outer learning-rate
multipliers, projection after each outer step), so a new kind needs no change in the trainer.

``PROBLEMS`` maps each ``ProblemConfig.kind`` to a builder ``(problem, meta, network, masks) ->
MetaProblem``; :mod:`metasparse.meta.problems` imports the modules that register the known kinds.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch

from metasparse.errors import ConfigError
from metasparse.nn.siren import CoordinateNetwork, Params
from metasparse.utils.registry import Registry

if TYPE_CHECKING:
    from metasparse.meta.engine import MetaConfig

Meta = dict[str, Params]


@dataclass(frozen=True)
class ProblemConfig:
    """What the inner loop adapts. ``kind``: ``weights`` (MAML / Meta-SparseINR), ``functa``
    (latent → shifts), ``modulations`` (shifts adapted directly), or a kind registered by an
    extension (``mscn-updates``, ``mscn-weights``, ``mscn-modulations``)."""

    # The bundled codec model's id hashes these fields: their names, order and defaults are a file format.
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


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((pred - target) ** 2).mean()


class MetaProblem:
    """Base class: the default hooks give plain MAML with a scalar inner learning rate."""

    model: CoordinateNetwork
    inner_lr: float = 1e-2
    meta_sgd: bool = False
    lr_clip: tuple[float, float] = (0.0, 1.0)
    # Whether Meta-SparseINR's Algorithm 1 may prune this problem's weights (see ``with_masks``).
    supports_pruning: ClassVar[bool] = False
    # Whether a signal is a sparse code (a shared pattern of kept modulations) that a codec can quantise
    # and send: MSCN's gated modulations (Eq. 10).
    sends_sparse_code: ClassVar[bool] = False

    # -- hooks for the trainer ---------------------------------------------------------------
    def on_outer_step(self, step: int, meta: Meta) -> None:
        """Called before outer step ``step`` (e.g. to set a training schedule); default: nothing."""

    def lr_multipliers(self) -> dict[str, float]:
        """Outer learning-rate multiplier per top-level meta group; ``MetaConfig.group_lr_multipliers``
        entries take precedence."""
        return {}

    def project(self, meta: Meta) -> None:
        """Bring ``meta`` back into its valid set, in place, after each optimiser step; default: nothing."""

    def prunable_names(self) -> list[str]:
        """The ``meta["theta"]`` entries that pruning may mask."""
        return []

    def with_masks(self, masks: Params | None) -> MetaProblem:
        """The same problem with these fixed 0/1 weight masks (pruning); ``None``: without masks."""
        if masks:
            raise ConfigError(f"{type(self).__name__} has no weights to mask")
        return self

    # -- state ------------------------------------------------------------------------------
    def init_meta(self, generator: torch.Generator, device=None) -> dict[str, Params]:
        raise NotImplementedError

    def init_fast(self, meta: dict[str, Params]) -> Params:
        raise NotImplementedError

    # -- inner loop -------------------------------------------------------------------------
    def predict(self, fast: Params, meta: dict[str, Params], coords: torch.Tensor, noise=None) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, fast: Params, meta: dict[str, Params], coords, target, noise=None) -> torch.Tensor:
        return mse(self.predict(fast, meta, coords, noise), target)

    def step_size(self, meta: dict[str, Params], noise=None) -> dict[str, torch.Tensor | float]:
        """Per-parameter inner step: a scalar lr, or MetaSGD's learned lrs clipped to a range."""
        if self.meta_sgd:
            lo, hi = self.lr_clip
            return {k: v.clamp(lo, hi) for k, v in meta["lrs"].items()}
        return {k: self.inner_lr for k in self.fast_names()}

    def regulariser(self, meta: dict[str, Params], noise=None) -> torch.Tensor | float:
        return 0.0

    def sample_noise(self, meta: dict[str, Params], generator: torch.Generator | None):
        """Randomness shared by all signals of one outer step (e.g. hard-concrete gate samples)."""
        return

    def eval_noise(self, meta: dict[str, Params]):
        """The noise-free (test-time) counterpart of ``sample_noise``."""
        return

    def fast_names(self) -> list[str]:
        raise NotImplementedError

    def init_meta_sgd_lrs(self, fast_like: Params, generator: torch.Generator, low: float, high: float) -> Params:
        """MetaSGD learning rates ``U(low, high)``, one per adapted entry (Li et al. 2017)."""
        return {
            k: torch.rand(v.shape, generator=generator).to(v) * (high - low) + low for k, v in fast_like.items()
        }

    def per_signal_cost(self, fast: Params, meta: dict[str, Params]) -> torch.Tensor:
        """What a signal costs to describe once ``meta`` is known (count of entries sent)."""
        return torch.tensor(float(sum(v.numel() for v in fast.values())))


class WeightsProblem(MetaProblem):
    """MAML on the network's weights (Meta-SparseINR): the inner loop adapts θ itself.

    ``masks`` (fixed 0/1 tensors, e.g. from pruning) multiply the weights in the forward, so
    pruned entries stay at zero effect and receive zero gradient in both loops.
    """

    supports_pruning: ClassVar[bool] = True

    def __init__(
        self,
        model: CoordinateNetwork,
        inner_lr: float = 1e-2,
        meta_sgd: bool = False,
        meta_sgd_init: tuple[float, float] = (0.001, 0.05),
        lr_clip: tuple[float, float] = (0.0, 1.0),
        masks: Params | None = None,
    ):
        self.model = model
        self.inner_lr = inner_lr
        self.meta_sgd = meta_sgd
        self.meta_sgd_init = meta_sgd_init
        self.lr_clip = lr_clip
        self.masks = masks

    def prunable_names(self) -> list[str]:
        return list(self.model.weight_names)

    def with_masks(self, masks: Params | None) -> WeightsProblem:
        masked = copy.copy(self)  # every setting is kept; only the masks differ
        masked.masks = masks
        return masked

    def fast_names(self) -> list[str]:
        return self.model.weight_names + self.model.bias_names

    def init_meta(self, generator: torch.Generator, device=None) -> dict[str, Params]:
        theta = self.model.init(generator, device)
        meta = {"theta": theta}
        if self.meta_sgd:
            meta["lrs"] = self.init_meta_sgd_lrs(theta, generator, *self.meta_sgd_init)
        return meta

    def init_fast(self, meta: dict[str, Params]) -> Params:
        return dict(meta["theta"])

    def predict(self, fast, meta, coords, noise=None):
        return self.model.apply(fast, coords, masks=self.masks)

    def per_signal_cost(self, fast, meta) -> torch.Tensor:
        names = self.model.weight_names
        if self.masks is None:
            return torch.tensor(float(sum(fast[n].numel() for n in names)))
        return sum(self.masks[n].sum() for n in names if n in self.masks) + sum(
            fast[n].numel() for n in names if n not in self.masks
        )


class ModulationProblem(MetaProblem):
    """Shift modulations (Functa, Dupont et al. 2022): θ is shared, the inner loop adapts a
    per-signal vector. With ``latent_dim`` the vector is a latent ``φ`` mapped to all shifts by a
    meta-learned linear map (Functa / COIN++); without it, the shifts themselves are adapted.
    """

    def __init__(
        self,
        model: CoordinateNetwork,
        latent_dim: int | None = None,
        inner_lr: float = 1e-2,
        meta_sgd: bool = True,
        meta_sgd_init: tuple[float, float] = (0.005, 0.1),
        lr_clip: tuple[float, float] = (0.0, 1.0),
    ):
        if model.num_modulations == 0:
            raise ValueError("shift modulation needs a SIREN")
        self.model = model
        self.latent_dim = latent_dim
        self.inner_lr = inner_lr
        self.meta_sgd = meta_sgd
        self.meta_sgd_init = meta_sgd_init
        self.lr_clip = lr_clip

    @property
    def code_size(self) -> int:
        return self.latent_dim if self.latent_dim else self.model.num_modulations

    def fast_names(self) -> list[str]:
        return ["code"]

    def init_meta(self, generator: torch.Generator, device=None) -> dict[str, Params]:
        meta: dict[str, Params] = {"theta": self.model.init(generator, device)}
        if self.latent_dim:
            m, d = self.model.num_modulations, self.latent_dim
            bound = 1.0 / math.sqrt(d)
            meta["latent_map"] = {
                "weight": ((torch.rand(m, d, generator=generator) * 2 - 1) * bound).to(device),
                "bias": torch.zeros(m, device=device),
            }
        if self.meta_sgd:
            meta["lrs"] = self.init_meta_sgd_lrs(
                {"code": torch.zeros(self.code_size, device=device)}, generator, *self.meta_sgd_init
            )
        return meta

    def init_fast(self, meta):
        # Functa starts every fit from zero modulations: the meta-learned θ is the "mean" signal.
        ref = meta["theta"]["layers.0.bias"]
        return {"code": torch.zeros(self.code_size, dtype=ref.dtype, device=ref.device)}

    def shifts(self, fast, meta, noise=None) -> torch.Tensor:
        code = fast["code"]
        if self.latent_dim:
            return meta["latent_map"]["weight"] @ code + meta["latent_map"]["bias"]
        return code

    def predict(self, fast, meta, coords, noise=None):
        return self.model.apply(meta["theta"], coords, shifts=self.shifts(fast, meta, noise))


# --------------------------------------------------------------------------------- registry

ProblemBuilder = Callable[[ProblemConfig, "MetaConfig", CoordinateNetwork, "Params | None"], MetaProblem]


PROBLEMS: Registry[ProblemBuilder] = Registry("problem kind")


@PROBLEMS.register("weights")
def _build_weights(problem: ProblemConfig, meta: MetaConfig, network: CoordinateNetwork, masks) -> WeightsProblem:
    m = meta
    return WeightsProblem(network, m.inner_lr, m.meta_sgd, tuple(m.meta_sgd_init), tuple(m.lr_clip), masks)


def _build_modulations(problem: ProblemConfig, meta: MetaConfig, network: CoordinateNetwork, masks):
    m = meta
    latent = problem.latent_dim if problem.kind == "functa" else None
    if problem.kind == "functa" and not latent:
        raise ConfigError("problem.kind=functa needs problem.latent_dim")
    return ModulationProblem(network, latent, m.inner_lr, m.meta_sgd, tuple(m.meta_sgd_init), tuple(m.lr_clip))


PROBLEMS.add("functa", _build_modulations)
PROBLEMS.add("modulations", _build_modulations)
