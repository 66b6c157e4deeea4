"""Checkpoints and model files: one safetensors file, tensors plus a JSON header (never pickle).

Tensors are stored flat under ``group/name`` keys (``meta/theta/layers.0.weight``,
``masks/layers.0.weight``, ``optim/3/exp_avg``, ``rng/batches``); everything else (the experiment
config, the step, the optimiser's scalar state, the loss history) is JSON in the safetensors
metadata under ``"metasparse"``. One file means one atomic replace per save
(:func:`metasparse.utils.fileio.write_atomic`): a run killed mid-save leaves the previous checkpoint intact,
and the temporary file it leaves behind is removed by a later save in that folder.

The header holds a SHA-256 ``checksum`` over the JSON and every tensor (name, dtype, shape,
bytes), so a changed byte or a missing tensor is refused on load rather than trained on. Files
written before the checksum existed have none and still load. A floating-point tensor holding
NaN or infinity is refused too: no file that the library writes should hold one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as serialize

from metasparse.errors import ModelError
from metasparse.utils.fileio import write_atomic

FORMAT = "metasparse-checkpoint"
FORMAT_VERSION = 1
CHECKSUM_KEY = "checksum"
CHECKSUM_ALGORITHM = "sha256"

# write_atomic's temporary files: ".NAME." + mkstemp's 8 random characters + ".tmp".
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")
# A temporary file this old is no save in progress (a live one is written within seconds).
ORPHAN_AGE_S = 60.0


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


def content_checksum(flat: dict[str, torch.Tensor], info: dict[str, Any]) -> str:
    """``sha256:HEX`` over the JSON header (without its checksum) and each tensor's name, dtype,
    shape and bytes, in name order; each part is length-prefixed so no two files share a digest."""
    digest = hashlib.sha256()

    def part(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    header = {k: v for k, v in info.items() if k != CHECKSUM_KEY}
    part(json.dumps(header, sort_keys=True).encode())
    for name in sorted(flat):
        tensor = flat[name].detach().cpu().contiguous()
        part(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        part(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"{CHECKSUM_ALGORITHM}:{digest.hexdigest()}"


def remove_orphaned_temporaries(directory: str | Path, is_target: Callable[[str], bool],
                                min_age_s: float = ORPHAN_AGE_S) -> list[Path]:
    """Remove the temporary files that killed saves of ``is_target`` files left in ``directory``.

    Only files named as :func:`metasparse.utils.fileio.write_atomic` names them and untouched for
    ``min_age_s`` seconds are removed, so a save running in another process keeps its file.
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or not is_target(match.group("target")):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or now - entry.stat().st_mtime < min_age_s:
                continue
            os.unlink(entry.path)
        except OSError:  # gone already, or not ours to remove: a later save tries again
            continue
        removed.append(Path(entry.path))
    return removed


def _is_model_file(name: str) -> bool:
    return name.endswith(".safetensors")


def save(path: str | Path, tensors: dict[str, Any], info: dict[str, Any]) -> None:
    """Write ``tensors`` (nested dicts of tensors) and ``info`` (JSON-able) atomically, with a checksum."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temporaries(path.parent, _is_model_file)
    flat = {k: v.detach().contiguous().cpu() for k, v in flatten(tensors).items()}
    # The checksum is taken over the header as it will read back (tuples as lists, keys as strings).
    header = json.loads(json.dumps({"format": FORMAT, "version": FORMAT_VERSION, **info}))
    header[CHECKSUM_KEY] = content_checksum(flat, header)
    write_atomic(path, serialize(flat, metadata={"metasparse": json.dumps(header)}))


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
        flat = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise ModelError(f"{path} is not a readable metasparse model file ({reason})") from None
    try:
        info = json.loads(metadata["metasparse"])
    except (KeyError, json.JSONDecodeError):
        info = None
    if not isinstance(info, dict):
        raise ModelError(f"{path} is a safetensors file but not a metasparse model (no metasparse header)")
    if info.get("format") != FORMAT:
        raise ModelError(f"{path}: unknown format {info.get('format')!r}")
    version = info.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelError(f"{path}: invalid format version {version!r} (a corrupt file)")
    if version > FORMAT_VERSION:
        raise ModelError(f"{path} was written by a newer metasparse (format {version}); please upgrade")
    stored = info.get(CHECKSUM_KEY)
    if stored is not None and stored != content_checksum(flat, info):
        raise ModelError(
            f"{path} is corrupt: its contents do not match the checksum it was saved with "
            "(a changed byte or a missing tensor)"
        )
    for name, tensor in flat.items():
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            raise ModelError(
                f"{path}: tensor {name!r} holds NaN or infinite values (a corrupt file, or one saved from a "
                "diverged run)"
            )
    if device is not None and torch.device(device).type != "cpu":
        flat = {k: v.to(device) for k, v in flat.items()}
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
