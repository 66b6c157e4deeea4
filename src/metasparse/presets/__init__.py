"""Named run presets (``metasparse presets`` lists them; ``--set`` overrides any field).

Paper settings come from the papers' appendices and the official Meta-SparseINR code; the
``demo`` preset is what the README's first command runs on the photos scikit-image ships.

This package owns ``PRESETS``: it imports each family module, and each adds its presets on import.
"""

from __future__ import annotations

from metasparse.config import RunConfig
from metasparse.presets import codec, modalities, mscn, paper
from metasparse.presets.registry import PRESETS

__all__ = ["PRESETS", "codec", "get_preset", "list_presets", "modalities", "mscn", "paper", "register_preset"]


def register_preset(config: RunConfig) -> RunConfig:
    """Add ``config`` under its name (for presets defined outside this package)."""
    return PRESETS.add_config(config)


def get_preset(name: str) -> RunConfig:
    return PRESETS.get(name)


def list_presets() -> list[RunConfig]:
    return [PRESETS[name] for name in sorted(PRESETS)]
