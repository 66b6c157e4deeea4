import zlib

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from metasparse.codec.format.entropy import (
    FREQUENCY_TOTAL,
    SymbolModel,
    decode,
    encode,
    estimated_bits,
    fit_symbol_model,
)
from metasparse.errors import BitstreamError, ModelError


def _peaked_symbols(shape: tuple[int, ...], num_symbols: int, spread: float, seed: int) -> np.ndarray:
    """Roughly Gaussian symbols around the middle of the alphabet, like quantised modulations."""
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(num_symbols / 2, spread, size=shape))
    return np.clip(values, 0, num_symbols - 1).astype(np.int64)


@pytest.mark.parametrize("num_symbols", [2, 16, 256, 1 << 16])
def test_round_trip_with_a_shared_model(num_symbols: int) -> None:
    training = _peaked_symbols((5000,), num_symbols, max(num_symbols / 8, 0.5), seed=0)
    model = fit_symbol_model(training, num_symbols, per_position=False)
    assert model.frequencies.shape == (1, num_symbols)
    for count, seed in [(0, 1), (1, 2), (7, 3), (3000, 4)]:
        symbols = _peaked_symbols((count,), num_symbols, max(num_symbols / 8, 0.5), seed=seed)
        data = encode(symbols, model)
        np.testing.assert_array_equal(decode(data, count, model), symbols)


def test_round_trip_with_a_per_position_model_and_2d_input() -> None:
    num_symbols, dim = 64, 12
    training = _peaked_symbols((400, dim), num_symbols, 5.0, seed=0) + np.arange(dim) - dim // 2
    training = np.clip(training, 0, num_symbols - 1)
    model = fit_symbol_model(training, num_symbols, per_position=True)
    assert model.frequencies.shape == (dim, num_symbols)
    symbols = np.clip(_peaked_symbols((50, dim), num_symbols, 5.0, seed=1) + np.arange(dim) - dim // 2, 0, 63)
    data = encode(symbols, model)
    np.testing.assert_array_equal(decode(data, symbols.size, model).reshape(-1, dim), symbols)
    # A tensor codes to the same bytes as the equivalent array.
    assert encode(torch.from_numpy(symbols), model) == data


def test_explicit_positions_code_sparse_vectors() -> None:
    num_symbols, dim = 32, 20
    model = fit_symbol_model(
        _peaked_symbols((300, dim), num_symbols, 4.0, seed=0), num_symbols, per_position=True
    )
    rng = np.random.default_rng(5)
    positions = np.sort(rng.choice(dim, size=7, replace=False))  # the kept modulations of one patch
    symbols = _peaked_symbols((7,), num_symbols, 4.0, seed=6)
    data = encode(symbols, model, positions=positions)
    np.testing.assert_array_equal(decode(data, 7, model, positions=positions), symbols)


def test_every_symbol_stays_encodable_even_if_never_seen_in_training() -> None:
    model = fit_symbol_model(np.full(1000, 5), 256, per_position=False)
    assert int(model.frequencies.min()) >= 1
    assert np.all(model.frequencies.sum(axis=1) == FREQUENCY_TOTAL)
    unseen = np.array([0, 255, 5, 17, 254, 1], dtype=np.int64)
    np.testing.assert_array_equal(decode(encode(unseen, model), unseen.size, model), unseen)


@pytest.mark.parametrize("per_position", [False, True])
def test_real_size_is_within_one_percent_of_the_ideal_code_length(per_position: bool) -> None:
    num_symbols, dim = 256, 16
    model = fit_symbol_model(
        _peaked_symbols((4000, dim), num_symbols, 6.0, seed=0), num_symbols, per_position
    )
    symbols = _peaked_symbols((10_000 // dim, dim), num_symbols, 6.0, seed=1)
    ideal_bytes = estimated_bits(symbols, model) / 8
    real_bytes = len(encode(symbols, model))
    assert ideal_bytes * 0.99 - 8 <= real_bytes <= ideal_bytes * 1.01 + 8


def test_estimated_bits_is_the_sum_of_minus_log2_probabilities() -> None:
    model = fit_symbol_model(np.array([0, 0, 0, 1, 2, 2]), 4, per_position=False)
    symbols = np.array([0, 3, 2])
    probabilities = model.frequencies[0].astype(np.float64) / FREQUENCY_TOTAL
    expected = -np.log2(probabilities[symbols]).sum()
    assert estimated_bits(symbols, model) == pytest.approx(expected, rel=1e-12)
    assert model.probabilities()[0] == pytest.approx(probabilities)


def test_coded_bytes_never_change() -> None:
    """Files must stay decodable: the same symbols and model give these exact bytes forever."""
    training = (np.arange(6000) * 7919 % 97 + np.arange(6000) % 13).reshape(-1, 6) % 64
    model = fit_symbol_model(training, 64, per_position=True)
    symbols = (np.arange(600) * 104729 % 61).reshape(-1, 6)
    data = encode(symbols, model)
    assert zlib.crc32(model.frequencies.astype("<u4").tobytes()) == 0x9A170D0F
    assert (len(data), zlib.crc32(data)) == (456, 0x1A9D495E)


def test_model_serialisation_round_trips_and_decodes_identically(tmp_path) -> None:
    model = fit_symbol_model(_peaked_symbols((500, 8), 128, 9.0, seed=0), 128, per_position=True)
    symbols = _peaked_symbols((40, 8), 128, 9.0, seed=1)
    data = encode(symbols, model)

    from_bytes = SymbolModel.from_bytes(model.to_bytes())
    assert from_bytes == model
    np.testing.assert_array_equal(decode(data, symbols.size, from_bytes).reshape(-1, 8), symbols)

    # A codec model file stores the table as an int32 array (every entry < 2**24).
    save_file({"entropy.frequencies": model.frequencies.astype(np.int32)}, str(tmp_path / "model.safetensors"))
    from_file = SymbolModel(load_file(str(tmp_path / "model.safetensors"))["entropy.frequencies"])
    assert from_file == model
    assert encode(symbols, from_file) == data


def test_model_bytes_are_compact_for_large_sparse_alphabets() -> None:
    model = fit_symbol_model(_peaked_symbols((2000, 4), 1 << 16, 30.0, seed=0), 1 << 16, per_position=True)
    assert len(model.to_bytes()) < model.frequencies.nbytes / 20


def test_corrupt_model_data_raises_model_error() -> None:
    good = fit_symbol_model(np.arange(100) % 10, 16, per_position=False).to_bytes()
    header_size = 14
    bad_inputs = [
        b"",
        good[:10],
        b"XXXX" + good[4:],
        good[:4] + b"\x09" + good[5:],  # version
        good[:header_size] + b"not zlib at all",
        good[:-3],  # truncated compressed table
        good[:6] + (1 << 30).to_bytes(4, "little") + good[10:],  # absurd number of positions
        good[:header_size] + zlib.compress(b"\x00" * 64),  # a table of zeros
    ]
    for data in bad_inputs:
        with pytest.raises(ModelError):
            SymbolModel.from_bytes(data)
    with pytest.raises(ModelError):
        SymbolModel(np.full((1, 4), FREQUENCY_TOTAL // 4 + 1))
    with pytest.raises(ModelError):
        SymbolModel(np.full((1, 4), float(FREQUENCY_TOTAL // 4)))


def test_decoding_garbage_returns_symbols_or_raises_bitstream_error() -> None:
    rng = np.random.default_rng(0)
    model = fit_symbol_model(_peaked_symbols((300, 10), 64, 4.0, seed=0), 64, per_position=True)
    real = encode(_peaked_symbols((30, 10), 64, 4.0, seed=1), model)
    candidates = [rng.bytes(int(n)) for n in rng.integers(0, 80, size=300)]
    candidates += [real[:n] for n in range(len(real))]
    candidates += [bytes(b ^ 0xFF for b in real), real + b"\x01\x02\x03\x04\x05"]
    outcomes = {"decoded": 0, "rejected": 0}
    for data in candidates:
        try:
            symbols = decode(data, 300, model)
        except BitstreamError:
            outcomes["rejected"] += 1
        else:
            outcomes["decoded"] += 1
            assert symbols.shape == (300,) and symbols.min() >= 0 and symbols.max() < 64
    assert outcomes["rejected"] > 0


def test_invalid_arguments_are_rejected() -> None:
    shared = fit_symbol_model(np.arange(10), 16, per_position=False)
    per_position = fit_symbol_model(np.arange(20).reshape(5, 4) % 16, 16, per_position=True)
    with pytest.raises(ValueError):
        encode(np.array([16]), shared)
    with pytest.raises(ValueError):
        encode(np.array([-1]), shared)
    with pytest.raises(ValueError):
        encode(np.array([0.5]), shared)
    with pytest.raises(ValueError, match="whole vectors"):
        encode(np.arange(6), per_position)
    with pytest.raises(ValueError):
        encode(np.arange(3), per_position, positions=np.array([0, 1, 4]))
    with pytest.raises(ValueError):
        decode(b"", -1, shared)
    with pytest.raises(ValueError):
        fit_symbol_model(np.arange(10), 5, per_position=False)
    with pytest.raises(ValueError):
        fit_symbol_model(np.arange(10), 16, per_position=True)
    with pytest.raises(ValueError):
        fit_symbol_model(np.arange(10), 16, per_position=False, smoothing=0.0)
