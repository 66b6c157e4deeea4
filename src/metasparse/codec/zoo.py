"""The codec models that ship with the package, and loading a codec by bundled name or by file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from metasparse.codec.model import ModulationCodec, load_codec_file
from metasparse.errors import ModelError
from metasparse.utils.device import resolve_device
from metasparse.utils.registry import Registry

# name → file under metasparse/pretrained/. A model that was once the default stays bundled, so that the
# files made with it still decode (``decompress`` finds it by the model id in the file).
BUNDLED: Registry[str] = Registry("bundled codec model")
BUNDLED.add("default", "codec-default-2.safetensors")
BUNDLED.add("default-1", "codec-default.safetensors")


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


def bundled_name_for(model_id: bytes) -> str | None:
    """The bundled model whose id is ``model_id`` or starts with it (a file's header holds the first 8
    bytes of the 16-byte id), if any."""
    prefix = bytes(model_id)
    for name in BUNDLED:
        path = bundled_model_path(name)
        if prefix and path.exists() and load_codec_file(path).model_id[: len(prefix)] == prefix:
            return name
    return None


__all__ = ["BUNDLED", "bundled_model_path", "bundled_name_for", "load_codec"]
