"""metasparse: meta-learned sparse implicit neural representations and a codec built on them.

The names below are the public API; each is imported on first use (``import metasparse`` does not
import torch)::

    import metasparse as ms

    codec = ms.load_codec("default")
    result = codec.compress(ms.read_image("photo.png"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = ("load_codec", "ImageCodec", "read_image", "load_images", "get_preset", "list_presets",
         "apply_overrides", "RunConfig", "Trainer", "MetaModel", "evaluate", "MetasparseError")

__all__ = [
    "ImageCodec",
    "MetaModel",
    "MetasparseError",
    "RunConfig",
    "Trainer",
    "__version__",
    "apply_overrides",
    "evaluate",
    "get_preset",
    "list_presets",
    "load_codec",
    "load_images",
    "load_model",
    "read_image",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time the names are loaded lazily
    from metasparse.codec.model import ImageCodec
    from metasparse.codec.zoo import load_codec
    from metasparse.config import RunConfig, apply_overrides
    from metasparse.data.images import load_images, read_image
    from metasparse.errors import MetasparseError
    from metasparse.evaluation import evaluate
    from metasparse.presets import get_preset, list_presets
    from metasparse.training.model_file import MetaModel
    from metasparse.training.trainer import Trainer


def load_model(path, device: str = "cpu") -> MetaModel:
    """A trained network (``model.safetensors`` written by ``metasparse train``): ``MetaModel.load``."""
    from metasparse.training.model_file import MetaModel

    return MetaModel.load(path, device=device)


def _load(name: str) -> Any:
    # Explicit imports (not by string), so that the import graph and its checks see them.
    if name == "load_codec":
        from metasparse.codec.zoo import load_codec as value
    elif name == "ImageCodec":
        from metasparse.codec.model import ImageCodec as value
    elif name == "read_image":
        from metasparse.data.images import read_image as value
    elif name == "load_images":
        from metasparse.data.images import load_images as value
    elif name == "get_preset":
        from metasparse.presets import get_preset as value
    elif name == "list_presets":
        from metasparse.presets import list_presets as value
    elif name == "apply_overrides":
        from metasparse.config import apply_overrides as value
    elif name == "RunConfig":
        from metasparse.config import RunConfig as value
    elif name == "Trainer":
        from metasparse.training.trainer import Trainer as value
    elif name == "MetaModel":
        from metasparse.training.model_file import MetaModel as value
    elif name == "evaluate":
        from metasparse.evaluation import evaluate as value
    elif name == "MetasparseError":
        from metasparse.errors import MetasparseError as value
    else:
        raise AttributeError(f"module 'metasparse' has no attribute {name!r}")
    return value


def __getattr__(name: str) -> Any:
    """PEP 562: import the module behind a public name on first use, then keep the name here."""
    value = _load(name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
