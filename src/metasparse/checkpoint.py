"""Checkpoints and model files: one safetensors file, tensors plus a JSON header (never pickle).

Tensors are stored flat under ``group/name`` keys (``meta/theta/layers.0.weight``,
``masks/layers.0.weight``, ``optim/3/exp_avg``, ``rng/batches``); everything else (the experiment
config, the step, the optimiser's scalar state, the loss history) is JSON in the safetensors
metadata under ``"metasparse"``. One file means one atomic ``os.replace`` per save: a run killed
mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import ModelError

FORMAT = "metasparse-checkpoint"
FORMAT_VERSION = 1


def flatten(tree: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def unflatten(flat: dict[str, torch.Tensor], prefix: str) -> dict:
    tree: dict = {}
    for key, v in flat.items():
        if not key.startswith(prefix):
            continue
        parts = key[len(prefix):].split("/")
        node = tree
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return tree


def save(path: str | Path, tensors: dict[str, Any], info: dict[str, Any]) -> None:
    """Write ``tensors`` (nested dicts of tensors) and ``info`` (JSON-able) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {k: v.detach().contiguous().cpu() for k, v in flatten(tensors).items()}
    header = {"format": FORMAT, "version": FORMAT_VERSION, **info}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(flat, tmp, metadata={"metasparse": json.dumps(header)})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | Path, device=None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`save`; raise ``ModelError`` with one clear line otherwise."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelError(f"expected a model file, got a directory: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        flat = load_file(str(path), device=str(device) if device is not None else "cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"{path} is not a readable metasparse model file ({str(e).splitlines()[0]})") from None
    try:
        info = json.loads(metadata["metasparse"])
    except (KeyError, json.JSONDecodeError):
        raise ModelError(f"{path} is a safetensors file but not a metasparse model (no metasparse header)") from None
    if info.get("format") != FORMAT:
        raise ModelError(f"{path}: unknown format {info.get('format')!r}")
    if int(info.get("version", 0)) > FORMAT_VERSION:
        raise ModelError(f"{path} was written by a newer metasparse (format {info['version']}); please upgrade")
    return flat, info


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser's state into tensors and JSON (works for Adam and SGD)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, state in sd["state"].items():
        for k, v in state.items():
            if torch.is_tensor(v):
                tensors[f"{idx}/{k}"] = v
            else:
                scalars[f"{idx}/{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], info: dict[str, Any]):
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        idx, name = key.split("/", 1)
        state.setdefault(int(idx), {})[name] = v
    for key, v in info.get("scalars", {}).items():
        idx, name = key.split("/", 1)
        state.setdefault(int(idx), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})


def generator_state(generator: torch.Generator) -> torch.Tensor:
    return generator.get_state().clone()
