"""One hard-concrete gate mechanism for anything that can be sparsified (MSCN, Section 3.2).

A gate multiplies what it gates: a weight tensor (sparse networks), an inner-loop update (sparse
per-signal changes, Eq. 9), a modulation vector (Eq. 10) or a layer's activations. What differs is
only *how many elements share one gate*, described by a ``GateSpec``:

- ``unstructured``: one gate per element of the parameter;
- ``rows`` (alias ``neurons``): one gate per output unit, shared by a weight row (structured /
  group sparsity: a closed row removes the unit's incoming weights);
- ``columns``: one gate per input unit, shared by a weight column;
- ``tensor``: one gate for the whole parameter.

Layout convention: a parameter's ``log_alpha`` keeps the parameter's number of dimensions, with
size 1 along the shared axes (``rows`` of an ``(out, in)`` weight: ``(out, 1)``; ``columns``:
``(1, in)``; ``tensor``: ``(1, 1)``). A gate therefore broadcasts against its parameter, and the
group size of a gate is ``param.numel() / log_alpha.numel()`` - no spec needs to be carried around
after creation. ``expand`` also accepts the compact form (``(out,)`` for rows, ``(in,)`` for
columns, a scalar for ``tensor``).

Gate dicts map parameter names to tensors; names that are absent are not gated (gate 1). Sampled
and deterministic gate dicts are expanded to the full parameter shapes, so an engine can multiply a
weight, or an update, by ``z[name]`` directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from metasparse.sparsity.hard_concrete import (
    DEFAULT_INITIAL_KEEP_PROB,
    DEFAULT_INITIAL_LOG_ALPHA_STD,
    HARD_CONCRETE,
    HardConcrete,
)
from metasparse.sparsity.masks import bias_names, weight_names

Granularity = Literal["unstructured", "rows", "neurons", "columns", "tensor"]
_GRANULARITIES: tuple[str, ...] = ("unstructured", "rows", "neurons", "columns", "tensor")


@dataclass(frozen=True)
class GateSpec:
    """What one gate covers in a parameter; see the module docstring for the granularities."""

    granularity: Granularity = "unstructured"

    def __post_init__(self) -> None:
        if self.granularity not in _GRANULARITIES:
            raise ValueError(
                f"unknown gate granularity {self.granularity!r}; expected one of {_GRANULARITIES}"
            )

    @property
    def kind(self) -> str:
        """The granularity with the ``neurons`` alias resolved to ``rows``."""
        return "rows" if self.granularity == "neurons" else self.granularity

    def gate_shape(self, param_shape: Sequence[int] | torch.Size) -> tuple[int, ...]:
        """Shape of the gate (and of its ``log_alpha``) for a parameter of ``param_shape``.

        Same number of dimensions as the parameter, size 1 along shared axes. For a 1-D parameter
        (a bias, a modulation vector) ``rows`` and ``unstructured`` both give one gate per element;
        ``columns`` has no meaning there and is rejected.
        """
        shape = tuple(int(s) for s in param_shape)
        if len(shape) == 0:
            if self.kind == "columns":
                raise ValueError("a scalar parameter has no columns to gate")
            return ()
        if self.kind == "unstructured":
            return shape
        if self.kind == "tensor":
            return (1,) * len(shape)
        if self.kind == "rows":
            return (shape[0],) + (1,) * (len(shape) - 1)
        if len(shape) < 2:
            raise ValueError(f"columns gates need a parameter with an input axis, got shape {shape}")
        return (1, shape[1]) + (1,) * (len(shape) - 2)

    def compact_gate_shape(self, param_shape: Sequence[int] | torch.Size) -> tuple[int, ...]:
        """The gate shape without the singleton axes: ``(out,)`` rows, ``(in,)`` columns, ``()`` tensor."""
        shape = tuple(int(s) for s in param_shape)
        self.gate_shape(shape)  # validates the granularity against the shape
        if self.kind == "unstructured":
            return shape
        if self.kind == "tensor" or len(shape) == 0:
            return ()
        return (shape[0],) if self.kind == "rows" else (shape[1],)

    def group_size(self, param_shape: Sequence[int] | torch.Size) -> int:
        """Number of parameter elements that one gate covers."""
        return math.prod(int(s) for s in param_shape) // math.prod(self.gate_shape(param_shape))


def resolve_gate_specs(
    params: Mapping[str, torch.Tensor],
    spec: GateSpec | Mapping[str, GateSpec] = GateSpec(),
    names: Iterable[str] | None = None,
    gate_biases: bool = False,
) -> dict[str, GateSpec]:
    """Map each gated parameter name to its spec.

    A mapping ``spec`` is taken as is (its keys are the gated names). A single spec applies to
    ``names`` if given, otherwise to every ``*.weight`` of ``params`` plus every ``*.bias`` when
    ``gate_biases`` is set.
    """
    if isinstance(spec, Mapping):
        specs = dict(spec)
    else:
        if names is None:
            names = weight_names(params) + (bias_names(params) if gate_biases else [])
        specs = {name: spec for name in names}
    unknown = [name for name in specs if name not in params]
    if unknown:
        raise KeyError(f"gate specs name parameters that do not exist: {unknown}")
    return specs


def init_log_alphas(
    params: Mapping[str, torch.Tensor],
    spec: GateSpec | Mapping[str, GateSpec] = GateSpec(),
    names: Iterable[str] | None = None,
    gate_biases: bool = False,
    hard_concrete: HardConcrete = HARD_CONCRETE,
    initial_keep_prob: float = DEFAULT_INITIAL_KEEP_PROB,
    mean: float | None = None,
    std: float = DEFAULT_INITIAL_LOG_ALPHA_STD,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Initial ``log_alpha`` tensors (one per gated parameter, shaped by its spec).

    Gated names are chosen as in ``resolve_gate_specs``; initialisation as in
    ``HardConcrete.init_log_alpha`` (gates mostly open by default). The tensors are plain tensors
    on the parameters' device and dtype; make them leaves with ``requires_grad_()`` to learn them.
    """
    specs = resolve_gate_specs(params, spec, names, gate_biases)
    return {
        name: hard_concrete.init_log_alpha(
            spec_for_param.gate_shape(params[name].shape),
            initial_keep_prob=initial_keep_prob,
            mean=mean,
            std=std,
            generator=generator,
            device=params[name].device,
            dtype=params[name].dtype,
        )
        for name, spec_for_param in specs.items()
    }


def expand(
    gates_for_param: torch.Tensor, spec: GateSpec, param_shape: Sequence[int] | torch.Size
) -> torch.Tensor:
    """Broadcast one parameter's gates (kept-dim or compact layout) to the parameter's shape."""
    target = tuple(int(s) for s in param_shape)
    kept = spec.gate_shape(target)
    shape = tuple(gates_for_param.shape)
    if shape == kept:
        return gates_for_param.expand(target)
    if shape == spec.compact_gate_shape(target):
        return gates_for_param.reshape(kept).expand(target)
    raise ValueError(f"gates of shape {shape} do not fit a {spec.granularity} gate of a parameter {target}")


def _broadcast_to_params(
    gates: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor] | None
) -> dict[str, torch.Tensor]:
    if params is None:
        return dict(gates)
    return {name: z.expand(params[name].shape) for name, z in gates.items()}


def gate_uniform_noise(
    log_alphas: Mapping[str, torch.Tensor],
    generator: torch.Generator | None = None,
    batch_shape: Sequence[int] = (),
    hard_concrete: HardConcrete = HARD_CONCRETE,
) -> dict[str, torch.Tensor]:
    """Noise ``u ~ U(eps, 1 - eps)`` for every gate, with optional leading ``batch_shape``.

    Draw it outside ``vmap`` and pass it to ``sample_gates(..., noise=...)`` inside: a leading
    batch dimension gives each signal its own gate sample.
    """
    return {
        name: hard_concrete.uniform_noise(
            (*batch_shape, *la.shape), generator, device=la.device, dtype=la.dtype
        )
        for name, la in log_alphas.items()
    }


def sample_gates(
    log_alphas: Mapping[str, torch.Tensor],
    params: Mapping[str, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    noise: Mapping[str, torch.Tensor] | None = None,
    hard_concrete: HardConcrete = HARD_CONCRETE,
) -> dict[str, torch.Tensor]:
    """Training-time gate samples ``z`` (differentiable in ``log_alphas``), one tensor per gated name.

    With ``params`` the samples are expanded to the parameter shapes (a group gate repeats along
    its shared axes: same value, one sample per group); without, they keep the ``log_alpha``
    layout. ``noise`` (from ``gate_uniform_noise``) fixes the randomness, as needed inside ``vmap``;
    otherwise it is drawn from ``generator``.
    """
    z = {
        name: hard_concrete.sample(la, None if noise is None else noise[name], generator)
        for name, la in log_alphas.items()
    }
    return _broadcast_to_params(z, params)


def deterministic_gates(
    log_alphas: Mapping[str, torch.Tensor],
    params: Mapping[str, torch.Tensor] | None = None,
    hard_concrete: HardConcrete = HARD_CONCRETE,
) -> dict[str, torch.Tensor]:
    """Test-time gates ``min(1, max(0, sigmoid(log_alpha) (zeta - gamma) + gamma))``, expanded like
    ``sample_gates``."""
    z = {name: hard_concrete.deterministic(la) for name, la in log_alphas.items()}
    return _broadcast_to_params(z, params)


def group_sizes(log_alphas: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Elements covered by one gate of each parameter (1 for unstructured gates).

    Leading dimensions of a parameter beyond those of its gates (a batch of per-signal copies)
    do not count: the group size is per signal.
    """
    sizes = {}
    for name, la in log_alphas.items():
        per_signal_shape = params[name].shape[params[name].dim() - la.dim() :]
        fits = la.dim() <= params[name].dim() and all(
            g in (1, p) for g, p in zip(la.shape, per_signal_shape, strict=True)
        )
        if not fits:
            raise ValueError(
                f"gates of shape {tuple(la.shape)} do not broadcast to {name} {tuple(per_signal_shape)}"
            )
        sizes[name] = per_signal_shape.numel() // la.numel()
    return sizes


def expected_l0_total(
    log_alphas: Mapping[str, torch.Tensor],
    params: Mapping[str, torch.Tensor] | None = None,
    weighted_by_group_size: bool = True,
    hard_concrete: HardConcrete = HARD_CONCRETE,
) -> torch.Tensor:
    """Differentiable expected number of non-zero gates (or of gated elements), a 0-dim tensor.

    ``weighted_by_group_size`` counts each gate as the number of elements it covers, which is the
    per-signal cost (a row gate covering 256 weights costs 256 when open); it needs ``params`` for
    the shapes. Unweighted, every gate counts once (e.g. a modulation gate = one sent value).
    """
    if weighted_by_group_size and params is None:
        raise ValueError("weighting by group size needs the parameters (for their shapes)")
    sizes = group_sizes(log_alphas, params) if weighted_by_group_size and params is not None else {}
    terms = [hard_concrete.expected_l0(la) * sizes.get(name, 1) for name, la in log_alphas.items()]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()


def clamp_log_alphas_(
    log_alphas: Mapping[str, torch.Tensor], hard_concrete: HardConcrete = HARD_CONCRETE
) -> None:
    """Clamp learnable ``log_alpha`` leaves in place to ``hard_concrete.log_alpha_range``.

    Call after each optimiser step; in place and outside autograd so the optimiser keeps its state
    attached to the same tensors.
    """
    low, high = hard_concrete.log_alpha_range
    with torch.no_grad():
        for la in log_alphas.values():
            la.clamp_(low, high)


def gate_activations(h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Gate a layer's activations (representational sparsity): ``h * z``.

    ``h`` is ``(..., units)`` and ``z`` is ``(units,)`` (or anything broadcastable): a closed gate
    silences its unit for every input. The same product gates a modulation vector.
    """
    if z.dim() > 0 and z.shape[-1] != h.shape[-1]:
        raise ValueError(f"{z.shape[-1]} gates for activations with {h.shape[-1]} units")
    return h * z
