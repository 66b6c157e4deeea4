"""Functional coordinate networks: SIREN, shift-modulated SIREN and Fourier-feature networks.

Every model is a pure function of a parameter dict, so ``torch.func.vmap`` runs many parameter
sets (one per signal) at once and ``torch.func.grad`` differentiates through the inner loop.
Parameter names are ``layers.{i}.weight`` / ``layers.{i}.bias``; the last layer is linear.

SIREN (Sitzmann et al. 2020), as used by Meta-SparseINR:

    h_0 = x,    h_l = sin(w0_l * (W_l h_{l-1} + b_l + s_l)),    y = W_L h_{L-1} + b_L + offset

``s_l`` are optional per-signal shift modulations (Functa / MSCN Eq. 10), one per hidden unit.
Init: ``U(-c, c)`` with ``c = 1/d_in`` for the first layer and ``sqrt(6/d_in)/w0`` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from metasparse.errors import ConfigError

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a coordinate network (JSON-serialisable through ``dataclasses.asdict``).

    ``kind``: ``"siren"`` or ``"ffn"``. ``depth`` counts the hidden (non-linear) layers, so the
    paper's 2→256→256→256→256→3 SIREN is ``depth=4, width=256`` (5 weight matrices).
    """

    kind: str = "siren"
    in_dim: int = 2
    out_dim: int = 3
    width: int = 256
    depth: int = 4
    w0: float = 200.0
    w0_first: float | None = None
    bias_init: str = "uniform"
    output_offset: float = 0.0
    fourier_sigma: float = 20.0
    fourier_seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("siren", "ffn"):
            raise ConfigError(f"unknown model kind {self.kind!r} (expected 'siren' or 'ffn')")
        if min(self.in_dim, self.out_dim, self.width, self.depth) <= 0:
            raise ConfigError("model dimensions must be positive")
        if self.bias_init not in ("uniform", "zeros"):
            raise ConfigError(f"unknown bias_init {self.bias_init!r} (expected 'uniform' or 'zeros')")
        if self.kind == "ffn" and self.width % 2:
            raise ConfigError("an FFN's width must be even (sin and cos features)")


class CoordinateNetwork:
    """A SIREN or FFN as a pure function ``apply(params, coords, masks, shifts) -> values``."""

    def __init__(self, config: ModelConfig):
        self.config = config
        c = config
        self.num_layers = c.depth + 1
        self.dims = [c.in_dim] + [c.width] * c.depth + [c.out_dim]
        # The FFN's first layer is a fixed random Fourier map (Tancik et al. 2020): regenerated
        # from its seed, so a saved config alone rebuilds it and it never enters meta-learning.
        self.fourier: torch.Tensor | None = None
        if c.kind == "ffn":
            g = torch.Generator().manual_seed(c.fourier_seed)
            self.fourier = torch.randn(c.width // 2, c.in_dim, generator=g) * c.fourier_sigma

    # -- parameters -------------------------------------------------------------------------
    def layer_names(self) -> list[int]:
        """Indices of the learned layers (the FFN's fixed Fourier layer is not one of them)."""
        return list(range(self.num_layers)) if self.config.kind == "siren" else list(range(1, self.num_layers))

    @property
    def weight_names(self) -> list[str]:
        return [f"layers.{i}.weight" for i in self.layer_names()]

    @property
    def bias_names(self) -> list[str]:
        return [f"layers.{i}.bias" for i in self.layer_names()]

    @property
    def num_modulations(self) -> int:
        """Shift modulations: one per hidden unit of every sine layer."""
        return self.config.depth * self.config.width if self.config.kind == "siren" else 0

    def w0_of(self, layer: int) -> float:
        c = self.config
        return c.w0_first if (layer == 0 and c.w0_first is not None) else c.w0

    def init(self, generator: torch.Generator | None = None, device=None) -> Params:
        """The paper's initialisation, drawn from ``generator`` (reproducible from a seed)."""
        c = self.config
        params: Params = {}
        for i in self.layer_names():
            d_in, d_out = self.dims[i], self.dims[i + 1]
            if c.kind == "ffn" and i == 1:
                d_in = c.width  # sin and cos features of the Fourier layer
            if c.kind == "siren":
                bound = 1.0 / d_in if i == 0 else math.sqrt(6.0 / d_in) / self.w0_of(i)
            else:  # ReLU layers after the Fourier map: PyTorch's default Linear init
                bound = 1.0 / math.sqrt(d_in)
            w = (torch.rand(d_out, d_in, generator=generator) * 2 - 1) * bound
            if c.bias_init == "zeros":
                b = torch.zeros(d_out)
            else:
                b = (torch.rand(d_out, generator=generator) * 2 - 1) * bound
            params[f"layers.{i}.weight"] = w.to(device)
            params[f"layers.{i}.bias"] = b.to(device)
        return params

    # -- forward ----------------------------------------------------------------------------
    def apply(
        self,
        params: Params,
        coords: torch.Tensor,
        masks: Params | None = None,
        shifts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Evaluate at ``coords`` (P, in_dim) → (P, out_dim).

        ``masks`` multiply parameters element-wise (pruning); ``shifts`` is a flat vector of
        ``num_modulations`` per-unit shifts added inside each sine (shift modulation).
        """
        c = self.config
        last = self.num_layers - 1

        def weight(i: int, kind: str) -> torch.Tensor:
            name = f"layers.{i}.{kind}"
            p = params[name]
            if masks is not None and name in masks:
                p = p * masks[name]
            return p

        h = coords
        start = 0
        if c.kind == "ffn":
            proj = 2 * math.pi * (h @ self.fourier.to(h).T)
            h = torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)
            start = 1
        for i in range(start, last):
            w, b = weight(i, "weight"), weight(i, "bias")
            if c.kind == "siren":
                # sin(w0 (W h + b + s)) = sin((w0 W) h + w0 (b + s)): scaling the (width x width)
                # weights instead of the (pixels x width) activations saves two elementwise passes
                # over the activations per layer, forward and backward, where the step's time goes.
                if shifts is not None:
                    b = b + shifts[i * c.width:(i + 1) * c.width]
                w0 = self.w0_of(i)
                w, b = w0 * w, w0 * b
            pre = torch.addmm(b, h, w.T) if h.dim() == 2 else h @ w.T + b
            h = torch.sin(pre) if c.kind == "siren" else torch.relu(pre)
        out = h @ weight(last, "weight").T + weight(last, "bias")
        return out + c.output_offset if c.output_offset else out

    def __call__(self, params, coords, masks=None, shifts=None) -> torch.Tensor:
        return self.apply(params, coords, masks, shifts)

    def num_weights(self) -> int:
        return sum(self.dims_of(n)[0] * self.dims_of(n)[1] for n in self.weight_names)

    def dims_of(self, name: str) -> tuple[int, int]:
        i = int(name.split(".")[1])
        d_in = self.config.width if (self.config.kind == "ffn" and i == 1) else self.dims[i]
        return self.dims[i + 1], d_in


def build_model(config: ModelConfig) -> CoordinateNetwork:
    return CoordinateNetwork(config)
