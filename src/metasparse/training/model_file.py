"""A meta-learned model file (``model.safetensors``, ``round_XX.safetensors``): config, meta-state, masks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from metasparse.config import RunConfig, build_problem
from metasparse.errors import ConfigError, MetasparseError, ModelError
from metasparse.meta.problems import MetaProblem
from metasparse.utils import tensorfile as ckpt


@dataclass
class MetaModel:
    """A meta-learned model: config, meta-state and masks. What ``evaluate`` and the codec load."""

    config: RunConfig
    meta: dict[str, dict[str, torch.Tensor]]
    masks: dict[str, torch.Tensor] | None = None
    info: dict = field(default_factory=dict)

    def problem(self, device=None) -> MetaProblem:
        masks = {k: v.to(device) for k, v in self.masks.items()} if self.masks else None
        return build_problem(self.config, masks)

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        tensors = {"meta": self.meta}
        if self.masks:
            tensors["masks"] = self.masks
        ckpt.save(path, tensors, {"kind": "model", "config": self.config.to_dict(), **self.info, **(extra or {})})

    @classmethod
    def load(cls, path: str | Path, device="cpu") -> MetaModel:
        flat, info = ckpt.load(path, device)
        if "config" not in info:
            raise ModelError(f"{path} has no run configuration")
        try:
            config = RunConfig.from_dict(info["config"])
        except (TypeError, ValueError, KeyError, MetasparseError) as e:  # an incompatible version
            raise ModelError(f"{path}: incompatible model configuration ({e})") from None
        meta = ckpt.unflatten(flat, "meta/")
        masks = ckpt.unflatten(flat, "masks/") or None
        try:
            check_meta_layout(path, config, meta, masks)
        except ConfigError as e:  # a configuration this version cannot build
            raise ModelError(f"{path}: incompatible model configuration ({e})") from None
        extra = {k: v for k, v in info.items() if k not in ("config", "format", "version", ckpt.CHECKSUM_KEY)}
        return cls(config, meta, masks, extra)


def check_meta_layout(path, config: RunConfig, meta: dict, masks: dict | None) -> None:
    """Refuse a file whose tensors are not those of the network its config describes (a missing or
    reshaped tensor would otherwise surface as a KeyError or a shape error deep inside training)."""
    problem = build_problem(config, None)
    expected = problem.init_meta(torch.Generator().manual_seed(0), device="cpu")
    for group, tensors in expected.items():
        for name, value in tensors.items():
            found = meta.get(group, {}).get(name)
            if not torch.is_tensor(found):
                raise ModelError(f"{path} has no tensor 'meta/{group}/{name}' (a corrupt or incompatible "
                                 "file)")
            if tuple(found.shape) != tuple(value.shape):
                raise ModelError(f"{path}: tensor 'meta/{group}/{name}' has shape {tuple(found.shape)}, "
                                 f"expected {tuple(value.shape)} (a corrupt or incompatible file)")
    theta = expected.get("theta", {})
    for name, mask in (masks or {}).items():
        if name not in theta or not torch.is_tensor(mask) or tuple(mask.shape) != tuple(theta[name].shape):
            raise ModelError(f"{path}: mask {name!r} matches no weight of this network (a corrupt or "
                             "incompatible file)")
