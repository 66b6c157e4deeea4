import json
import zlib

import numpy as np
import pytest
import torch

from metasparse.codec.format.quantize import Quantizer, QuantizerConfig, fit_quantizer
from metasparse.errors import ModelError


def _training_values(n: int = 4000, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.3 + 0.05).astype(np.float32)


@pytest.mark.parametrize("bits", range(1, 17))
def test_round_trip_error_is_at_most_half_a_step_inside_the_clip_range(bits: int) -> None:
    quantizer = fit_quantizer(_training_values(), bits=bits, clip_std=3.0)
    low = quantizer.mean - quantizer.clip_std * quantizer.std
    high = quantizer.mean + quantizer.clip_std * quantizer.std
    values = np.linspace(low, high, 5001, dtype=np.float64)
    symbols = quantizer.quantize(values)
    assert symbols.dtype == np.int64
    assert int(symbols.min()) == 0 and int(symbols.max()) == (1 << bits) - 1
    restored = quantizer.dequantize(symbols, dtype=np.float64)
    assert float(np.abs(restored - values).max()) <= quantizer.step / 2 * (1 + 1e-9)


def test_values_outside_the_clip_range_saturate_at_the_end_levels() -> None:
    quantizer = fit_quantizer(_training_values(), bits=6, clip_std=2.0)
    far = np.array([-1e9, quantizer.mean - 10 * quantizer.std, quantizer.mean + 10 * quantizer.std, 1e9])
    symbols = quantizer.quantize(far)
    assert symbols.tolist() == [0, 0, 63, 63]
    restored = quantizer.dequantize(symbols, dtype=np.float64)
    edge = quantizer.clip_std * quantizer.std
    assert restored.tolist() == pytest.approx([quantizer.mean - edge] * 2 + [quantizer.mean + edge] * 2)


def test_infinities_saturate_and_nan_is_rejected() -> None:
    quantizer = fit_quantizer(_training_values(), bits=4, clip_std=3.0)
    assert quantizer.quantize(np.array([-np.inf, np.inf])).tolist() == [0, 15]
    with pytest.raises(ValueError, match="NaN"):
        quantizer.quantize(np.array([0.0, np.nan]))


def test_arrays_or_tensors_in_numpy_arrays_out() -> None:
    quantizer = fit_quantizer(_training_values(), bits=5, clip_std=3.0)
    values = np.array([[0.1, -0.2], [0.3, 0.0]], dtype=np.float32)
    symbols = quantizer.quantize(values)
    assert isinstance(symbols, np.ndarray) and symbols.dtype == np.int64 and symbols.shape == (2, 2)
    restored = quantizer.dequantize(symbols)
    assert isinstance(restored, np.ndarray) and restored.dtype == np.float32
    # A tensor (one that needs a gradient included) is read through .detach(); the result is numpy.
    from_tensor = quantizer.quantize(torch.from_numpy(values).requires_grad_())
    assert isinstance(from_tensor, np.ndarray) and from_tensor.dtype == np.int64
    np.testing.assert_array_equal(from_tensor, symbols)
    from_tensor = quantizer.dequantize(torch.from_numpy(symbols))
    assert isinstance(from_tensor, np.ndarray) and from_tensor.dtype == np.float32
    np.testing.assert_array_equal(from_tensor, restored)
    assert fit_quantizer(torch.from_numpy(_training_values()), bits=5, clip_std=3.0) == quantizer


def test_symbols_and_levels_are_those_the_format_has_always_produced() -> None:
    """Pinned outputs (made when the quantiser computed in torch): encoder and decoder of every file
    made before must still agree on each symbol and each float32 reconstruction level."""
    values = np.random.default_rng(7).standard_normal(20000).astype(np.float32) * np.float32(0.3) + np.float32(0.05)
    expected = {3: (0x4B3536BF, 0x0360F173), 7: (0x6B7F0B1A, 0x85A3198B), 12: (0x68A43437, 0x5EBD46E9)}
    for bits, (symbols_crc, levels_crc) in expected.items():
        quantizer = fit_quantizer(values, bits=bits, clip_std=2.5)
        assert (quantizer.mean, quantizer.std) == (0.04806720092892647, 0.29772841930389404)
        symbols = quantizer.quantize(values)
        levels = quantizer.dequantize(np.arange(quantizer.num_symbols))
        assert (symbols.dtype, levels.dtype) == (np.int64, np.float32)
        assert zlib.crc32(symbols.astype("<i8").tobytes()) == symbols_crc
        assert zlib.crc32(levels.astype("<f4").tobytes()) == levels_crc


def test_fit_uses_the_mean_and_population_std_of_the_values() -> None:
    values = _training_values()
    quantizer = fit_quantizer(values, bits=8, clip_std=3.0)
    assert quantizer.mean == pytest.approx(float(values.astype(np.float64).mean()), rel=1e-6)
    assert quantizer.std == pytest.approx(float(values.astype(np.float64).std()), rel=1e-6)


def test_constant_training_values_still_give_a_usable_quantizer() -> None:
    quantizer = fit_quantizer(np.full(10, 0.7, dtype=np.float32), bits=4, clip_std=3.0)
    assert quantizer.std > 0
    symbols = quantizer.quantize(np.array([0.7, 0.0, 2.0], dtype=np.float32))
    assert symbols.tolist() == [8, 0, 15]


def test_parameters_are_float32_values_so_float32_storage_is_lossless() -> None:
    quantizer = fit_quantizer(_training_values(), bits=7, clip_std=2.7)
    for value in (quantizer.mean, quantizer.std, quantizer.clip_std):
        assert float(np.float32(value)) == value
    stored = np.array([quantizer.mean, quantizer.std, quantizer.clip_std], dtype=np.float32)
    reloaded = Quantizer(mean=float(stored[0]), std=float(stored[1]), bits=7, clip_std=float(stored[2]))
    symbols = np.arange(128)
    assert reloaded.dequantize(symbols).tobytes() == quantizer.dequantize(symbols).tobytes()


def test_dict_round_trip_through_json_is_exact() -> None:
    quantizer = fit_quantizer(_training_values(), bits=9, clip_std=3.3)
    restored = Quantizer.from_dict(json.loads(json.dumps(quantizer.to_dict())))
    assert restored == quantizer
    assert restored.config == QuantizerConfig(bits=9, clip_std=3.3)


@pytest.mark.parametrize(
    "description",
    [
        {"bits": 8, "clip_std": 3.0, "mean": 0.0},
        {"bits": 8.0, "clip_std": 3.0, "mean": 0.0, "std": 1.0},
        {"bits": 0, "clip_std": 3.0, "mean": 0.0, "std": 1.0},
        {"bits": 8, "clip_std": -1.0, "mean": 0.0, "std": 1.0},
        {"bits": 8, "clip_std": 3.0, "mean": "x", "std": 1.0},
        {"bits": 8, "clip_std": 3.0, "mean": 0.0, "std": float("nan")},
        [1, 2, 3],
    ],
)
def test_invalid_descriptions_raise_model_error(description: object) -> None:
    with pytest.raises(ModelError):
        Quantizer.from_dict(description)


@pytest.mark.parametrize("bits, clip_std", [(0, 3.0), (17, 3.0), (8, 0.0), (8, float("inf"))])
def test_invalid_settings_are_rejected(bits: int, clip_std: float) -> None:
    with pytest.raises(ValueError):
        QuantizerConfig(bits=bits, clip_std=clip_std)
    with pytest.raises(ValueError):
        fit_quantizer(_training_values(), bits=bits, clip_std=clip_std)


def test_fit_rejects_empty_or_non_finite_values() -> None:
    with pytest.raises(ValueError):
        fit_quantizer(np.empty(0), bits=8, clip_std=3.0)
    with pytest.raises(ValueError):
        fit_quantizer(np.array([1.0, float("inf")]), bits=8, clip_std=3.0)


def test_dequantize_rejects_symbols_outside_the_alphabet() -> None:
    quantizer = fit_quantizer(_training_values(), bits=3, clip_std=3.0)
    with pytest.raises(ValueError):
        quantizer.dequantize(np.array([0, 8]))
    with pytest.raises(ValueError):
        quantizer.dequantize(np.array([-1]))
    with pytest.raises(ValueError):
        quantizer.dequantize(np.array([0.5]))
