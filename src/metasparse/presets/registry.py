"""The table of named run presets; :mod:`metasparse.presets` imports the modules that fill it."""

from __future__ import annotations

from metasparse.config import RunConfig
from metasparse.errors import ConfigError
from metasparse.utils.registry import Registry


class PresetRegistry(Registry[RunConfig]):
    """Run configurations by their ``name``."""

    def add_config(self, config: RunConfig) -> RunConfig:
        return self.add(config.name, config)

    def get(self, name: str) -> RunConfig:  # type: ignore[override]
        if name not in self:
            raise ConfigError(f"unknown preset {name!r}; `metasparse presets` lists them")
        return self[name]


PRESETS = PresetRegistry("preset")
