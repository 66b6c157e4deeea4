"""The codec models that ship with the package, and loading a codec by bundled name or by file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from metasparse.codec.model import ModulationCodec, load_codec_file
from metasparse.errors import ModelError
from metasparse.utils.device import resolve_device
from metasparse.utils.registry import Registry

# name → file under metasparse/pretrained/
BUNDLED: Registry[str] = Registry("bundled codec model")
BUNDLED.add("default", "codec-default.safetensors")


def bundled_model_path(name: str) -> Path:
    return Path(str(resources.files("metasparse") / "pretrained" / BUNDLED[name]))


def load_codec(model: str, device: str = "cpu") -> ModulationCodec:
    """A bundled model by name, or a codec model file."""
    if model in BUNDLED:
        path = bundled_model_path(model)
        if not path.exists():
            raise ModelError(f"the bundled model {model!r} is missing from this installation ({path.name})")
    else:
        path = Path(model)
        if not path.exists():
            raise ModelError(f"no bundled model named {model!r} and no file at {path} "
                             f"(bundled: {', '.join(BUNDLED)})")
    return load_codec_file(path).to(resolve_device(device))


__all__ = ["BUNDLED", "bundled_model_path", "load_codec"]
