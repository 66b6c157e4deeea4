"""The model-independent layer of the image codec.

- :mod:`.quantize`: uniform scalar quantisation of modulations (``fit_quantizer``, ``Quantizer``).
- :mod:`.entropy`: range coding with a fitted frequency model (``fit_symbol_model``, ``encode``,
  ``decode``, ``estimated_bits``).
- :mod:`.bitstream`: the file container with header and checksum (``Header``, ``pack``, ``unpack``).
- :mod:`.baselines`: classical codecs for rate-distortion comparison.
"""

from metasparse.codec.format.bitstream import Header, model_id_of, pack, unpack
from metasparse.codec.format.entropy import SymbolModel, decode, encode, estimated_bits, fit_symbol_model
from metasparse.codec.format.quantize import Quantizer, QuantizerConfig, fit_quantizer

__all__ = [
    "Header",
    "Quantizer",
    "QuantizerConfig",
    "SymbolModel",
    "decode",
    "encode",
    "estimated_bits",
    "fit_quantizer",
    "fit_symbol_model",
    "model_id_of",
    "pack",
    "unpack",
]
