"""Which torch device a run uses."""

from __future__ import annotations

import torch

from metasparse.errors import ConfigError


def is_device_name(name) -> bool:
    """``auto`` or a device string torch can parse (cpu, cuda, cuda:1, mps ...); whether it exists is
    checked when it is used (``resolve_device``)."""
    if not isinstance(name, str):
        return False
    if name == "auto":
        return True
    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        return False
    return True


def resolve_device(name: str) -> torch.device:
    """``auto`` is the GPU where there is one; a name torch cannot parse is a ``ConfigError``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but no CUDA GPU is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r} (expected cpu, cuda, cuda:N or auto)") from None


def rank_device(name: str, local_rank: int, size: int) -> torch.device:
    """The device of one rank: ``cuda``/``auto`` become ``cuda:LOCAL_RANK``, one GPU per process."""
    dev = resolve_device(name)
    if dev.type != "cuda":
        return dev
    if dev.index is not None and size > 1:
        raise ConfigError(f"--device {name} would put every rank on one GPU; pass --device cuda (or auto) so "
                          "that each rank uses cuda:LOCAL_RANK")
    if dev.index is not None:
        return dev
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(f"LOCAL_RANK {local_rank} but only {count} GPU(s) are visible on this node; "
                          f"use --nproc_per_node {count} or fewer")
    return torch.device("cuda", local_rank)


