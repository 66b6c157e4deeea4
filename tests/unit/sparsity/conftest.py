"""Shared fixtures: parameter dicts shaped like the papers' SIRENs (values are random, not trained)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import pytest
import torch


def mlp_params(
    widths: Sequence[int], generator: torch.Generator, batch: int | None = None
) -> dict[str, torch.Tensor]:
    """``layers.i.weight`` (out, in) and ``layers.i.bias`` (out,), optionally with a batch dimension."""
    lead = () if batch is None else (batch,)
    params = {}
    for i, (d_in, d_out) in enumerate(itertools.pairwise(widths)):
        params[f"layers.{i}.weight"] = torch.randn(*lead, d_out, d_in, generator=generator)
        params[f"layers.{i}.bias"] = torch.randn(*lead, d_out, generator=generator)
    return params


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def make_params(generator: torch.Generator) -> Callable[..., dict[str, torch.Tensor]]:
    def make(widths: Sequence[int] = (2, 16, 16, 3), batch: int | None = None) -> dict[str, torch.Tensor]:
        return mlp_params(widths, generator, batch)

    return make
