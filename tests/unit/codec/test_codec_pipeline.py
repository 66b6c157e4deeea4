"""The model-independent layers working together, as the image codec chains them."""

import numpy as np
import pytest

from metasparse.codec.format.bitstream import Header, container_bytes, model_id_from_parts, pack, unpack
from metasparse.codec.format.entropy import decode, encode, estimated_bits, fit_symbol_model
from metasparse.codec.format.quantize import fit_quantizer
from metasparse.errors import BitstreamError
from metasparse.utils.fileio import write_atomic


def test_modulations_survive_quantise_code_pack_write_read_unpack_decode(tmp_path) -> None:
    rng = np.random.default_rng(0)
    dim, patches = 24, 6
    training = (rng.standard_normal((500, dim)) * 0.2).astype(np.float32)
    quantizer = fit_quantizer(training.reshape(-1), bits=6, clip_std=3.0)
    model = fit_symbol_model(quantizer.quantize(training), quantizer.num_symbols, per_position=True)
    model_id = model_id_from_parts({"base.weight": ("float32", (3, 3), np.ones((3, 3), np.float32).tobytes())})

    modulations = (rng.standard_normal((patches, dim)) * 0.2).astype(np.float32)
    symbols = quantizer.quantize(modulations)
    header = Header(
        model_id=model_id,
        height=64,
        width=96,
        channels=3,
        bit_depth=8,
        patch_size=32,
        quality_index=0,
        quant_bits=quantizer.bits,
        clip_std=quantizer.clip_std,
    )
    payload = encode(symbols, model)
    path = write_atomic(tmp_path / "image.mspz", pack(header, payload))
    assert path.stat().st_size == len(payload) + container_bytes(header) == len(payload) + 25
    assert len(payload) <= estimated_bits(symbols, model) / 8 + 8

    read_header, read_payload = unpack(path.read_bytes(), expected_model_id=model_id)
    assert read_header == header
    decoded = decode(read_payload, read_header.num_patches * dim, model).reshape(-1, dim)
    np.testing.assert_array_equal(decoded, symbols)
    restored = quantizer.dequantize(decoded)
    inside = np.abs(modulations - quantizer.mean) <= quantizer.clip_std * quantizer.std
    assert float(np.abs(restored - modulations)[inside].max()) <= quantizer.step / 2 + 1e-6

    with pytest.raises(BitstreamError, match="different model"):
        unpack(path.read_bytes(), expected_model_id=model_id_from_parts({"base.weight": ("float32", (3, 3), bytes(36))}))
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x40
    with pytest.raises(BitstreamError, match="checksum"):
        unpack(bytes(damaged), expected_model_id=model_id)
    assert np.array_equal(decode(read_payload, patches * dim, model), symbols.reshape(-1))
