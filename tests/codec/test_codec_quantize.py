import json

import numpy as np
import pytest
import torch

from metasparse.codec.format.quantize import Quantizer, QuantizerConfig, fit_quantizer
from metasparse.errors import ModelError


def _training_values(n: int = 4000, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=generator, dtype=torch.float64).to(torch.float32) * 0.3 + 0.05


@pytest.mark.parametrize("bits", range(1, 17))
def test_round_trip_error_is_at_most_half_a_step_inside_the_clip_range(bits: int) -> None:
    quantizer = fit_quantizer(_training_values(), bits=bits, clip_std=3.0)
    low = quantizer.mean - quantizer.clip_std * quantizer.std
    high = quantizer.mean + quantizer.clip_std * quantizer.std
    values = torch.linspace(low, high, 5001, dtype=torch.float64)
    symbols = quantizer.quantize(values)
    assert symbols.dtype == torch.int64
    assert int(symbols.min()) == 0 and int(symbols.max()) == (1 << bits) - 1
    restored = quantizer.dequantize(symbols, dtype=torch.float64)
    assert float((restored - values).abs().max()) <= quantizer.step / 2 * (1 + 1e-9)


def test_values_outside_the_clip_range_saturate_at_the_end_levels() -> None:
    quantizer = fit_quantizer(_training_values(), bits=6, clip_std=2.0)
    far = torch.tensor([-1e9, quantizer.mean - 10 * quantizer.std, quantizer.mean + 10 * quantizer.std, 1e9])
    symbols = quantizer.quantize(far)
    assert symbols.tolist() == [0, 0, 63, 63]
    restored = quantizer.dequantize(symbols, dtype=torch.float64)
    edge = quantizer.clip_std * quantizer.std
    assert restored.tolist() == pytest.approx([quantizer.mean - edge] * 2 + [quantizer.mean + edge] * 2)


def test_infinities_saturate_and_nan_is_rejected() -> None:
    quantizer = fit_quantizer(_training_values(), bits=4, clip_std=3.0)
    assert quantizer.quantize(torch.tensor([-torch.inf, torch.inf])).tolist() == [0, 15]
    with pytest.raises(ValueError, match="NaN"):
        quantizer.quantize(torch.tensor([0.0, torch.nan]))


def test_numpy_in_numpy_out_and_tensor_in_tensor_out() -> None:
    quantizer = fit_quantizer(_training_values().numpy(), bits=5, clip_std=3.0)
    values = np.array([[0.1, -0.2], [0.3, 0.0]], dtype=np.float32)
    symbols = quantizer.quantize(values)
    assert isinstance(symbols, np.ndarray) and symbols.dtype == np.int64 and symbols.shape == (2, 2)
    restored = quantizer.dequantize(symbols)
    assert isinstance(restored, np.ndarray) and restored.dtype == np.float32
    as_tensor = quantizer.dequantize(torch.from_numpy(symbols))
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.float32
    np.testing.assert_array_equal(as_tensor.numpy(), restored)


def test_fit_uses_the_mean_and_population_std_of_the_values() -> None:
    values = _training_values()
    quantizer = fit_quantizer(values, bits=8, clip_std=3.0)
    assert quantizer.mean == pytest.approx(float(values.double().mean()), rel=1e-6)
    assert quantizer.std == pytest.approx(float(values.double().std(correction=0)), rel=1e-6)


def test_constant_training_values_still_give_a_usable_quantizer() -> None:
    quantizer = fit_quantizer(torch.full((10,), 0.7), bits=4, clip_std=3.0)
    assert quantizer.std > 0
    symbols = quantizer.quantize(torch.tensor([0.7, 0.0, 2.0]))
    assert symbols.tolist() == [8, 0, 15]


def test_parameters_are_float32_values_so_float32_storage_is_lossless() -> None:
    quantizer = fit_quantizer(_training_values(), bits=7, clip_std=2.7)
    for value in (quantizer.mean, quantizer.std, quantizer.clip_std):
        assert float(np.float32(value)) == value
    stored = torch.tensor([quantizer.mean, quantizer.std, quantizer.clip_std], dtype=torch.float32)
    reloaded = Quantizer(mean=float(stored[0]), std=float(stored[1]), bits=7, clip_std=float(stored[2]))
    symbols = torch.arange(128)
    assert torch.equal(reloaded.dequantize(symbols), quantizer.dequantize(symbols))


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
        fit_quantizer(torch.empty(0), bits=8, clip_std=3.0)
    with pytest.raises(ValueError):
        fit_quantizer(torch.tensor([1.0, float("inf")]), bits=8, clip_std=3.0)


def test_dequantize_rejects_symbols_outside_the_alphabet() -> None:
    quantizer = fit_quantizer(_training_values(), bits=3, clip_std=3.0)
    with pytest.raises(ValueError):
        quantizer.dequantize(torch.tensor([0, 8]))
    with pytest.raises(ValueError):
        quantizer.dequantize(np.array([-1]))
