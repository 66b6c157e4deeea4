import math
import warnings

import numpy as np
import pytest
import pytorch_msssim
import torch

from metasparse.metrics import _ms_ssim_few_scales, ms_ssim, ms_ssim_scales, psnr, psnr_from_mse, psnr_uint8


def _image_pair(size: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:size, 0:size]
    clean = np.stack([rows * 3 % 256, columns * 5 % 256, (rows + columns) * 2 % 256], axis=-1).astype(
        np.float64
    )
    noisy = clean + rng.normal(0, noise, size=clean.shape)
    return clean.astype(np.uint8), np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def test_psnr_of_a_known_error() -> None:
    a = np.zeros((4, 4, 3), dtype=np.float32)
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-5)
    assert psnr(torch.zeros(2, 3), torch.full((2, 3), 0.01)) == pytest.approx(40.0)


def test_psnr_from_mse_by_hand() -> None:
    assert psnr_from_mse(torch.tensor([1.0, 0.01, 1e-4])).tolist() == pytest.approx([0.0, 20.0, 40.0])
    assert float(psnr_from_mse(torch.tensor(0.0))) == pytest.approx(120.0)  # floored at MSE 1e-12


def test_psnr_uint8_is_per_image_on_the_255_scale() -> None:
    original = torch.zeros(2, 4, 4, 3, dtype=torch.uint8)
    decoded = original.clone()
    decoded[0] = 51  # an error of 0.2 everywhere: MSE 0.04, 13.98 dB
    decoded[1, 0, 0, 0] = 255  # one wrong value of 48: MSE 1/48
    values = psnr_uint8(decoded, original)
    assert values.dtype == torch.float64
    assert values.tolist() == pytest.approx([-10 * math.log10(0.04), 10 * math.log10(48)])
    assert float(psnr_uint8(original, original)[0]) == pytest.approx(120.0)
    with pytest.raises(ValueError, match="shape"):
        psnr_uint8(decoded[:1], original)


def test_psnr_treats_uint8_as_255ths() -> None:
    clean, noisy = _image_pair(16, 10.0)
    assert psnr(clean, noisy) == pytest.approx(psnr(clean / 255.0, noisy / 255.0))
    assert psnr(torch.from_numpy(clean), noisy) == pytest.approx(psnr(clean, noisy))


def test_psnr_of_identical_images_is_infinite_and_shapes_must_match() -> None:
    clean, _ = _image_pair(8, 0.0)
    assert psnr(clean, clean) == math.inf
    with pytest.raises(ValueError, match="shape"):
        psnr(clean, clean[:4])
    with pytest.raises(ValueError):
        psnr(clean.astype(np.int32), clean.astype(np.int32))


def test_scale_count_follows_the_image_size() -> None:
    expected = {1: 1, 20: 1, 21: 2, 40: 2, 41: 3, 80: 3, 81: 4, 160: 4, 161: 5, 4000: 5}
    assert {side: ms_ssim_scales(side) for side in expected} == expected


def test_large_images_use_pytorch_msssim_unchanged() -> None:
    clean, noisy = _image_pair(176, 12.0)
    x = torch.from_numpy(clean).permute(2, 0, 1)[None].float() / 255
    y = torch.from_numpy(noisy).permute(2, 0, 1)[None].float() / 255
    reference = float(pytorch_msssim.ms_ssim(x, y, data_range=1.0))
    assert ms_ssim(clean, noisy) == pytest.approx(reference, abs=1e-6)
    # The few-scale path is the same computation: at 5 scales it must agree with the library.
    assert float(_ms_ssim_few_scales(x, y, 5, 11)) == pytest.approx(reference, abs=1e-6)


@pytest.mark.parametrize("size", [5, 12, 32, 64, 100])
def test_small_images_fall_back_to_fewer_scales(size: int) -> None:
    clean, noisy = _image_pair(size, 20.0)
    _, noisier = _image_pair(size, 60.0, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "skipping Gaussian smoothing" warnings either
        assert ms_ssim(clean, clean) == pytest.approx(1.0)
        value, worse = ms_ssim(clean, noisy), ms_ssim(clean, noisier)
    assert 0.0 <= worse < value < 1.0


def test_a_one_pixel_image_has_ms_ssim_one_with_itself() -> None:
    clean, noisy = _image_pair(1, 20.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ms_ssim(clean, clean) == pytest.approx(1.0)
        assert math.isfinite(ms_ssim(clean, noisy))


def test_layout_defaults_and_override() -> None:
    clean, noisy = _image_pair(40, 15.0)
    channels_last = ms_ssim(clean, noisy)
    as_tensors = ms_ssim(torch.from_numpy(clean).permute(2, 0, 1), torch.from_numpy(noisy).permute(2, 0, 1))
    assert as_tensors == pytest.approx(channels_last)
    assert ms_ssim(torch.from_numpy(clean), torch.from_numpy(noisy), channels_last=True) == pytest.approx(
        channels_last
    )
    batch = ms_ssim(np.stack([clean, clean]), np.stack([noisy, clean]))
    assert batch == pytest.approx((channels_last + 1.0) / 2)
    assert ms_ssim(clean[:, :, 0], noisy[:, :, 0]) < 1.0
