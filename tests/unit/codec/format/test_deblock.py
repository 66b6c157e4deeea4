"""The decoder's deblocking filter: seams between patches smoothed, edges of the picture kept."""

from __future__ import annotations

import numpy as np
import pytest

from metasparse.codec.format.deblock import Deblocking, deblock


def blocky(height=64, width=96, patch=32, seed=0):
    """Smooth content plus a different constant offset per patch: a decoded image's seams."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    smooth = 100 + 40 * np.sin(x / 17.0) + 30 * np.cos(y / 13.0)
    offsets = rng.uniform(-6, 6, ((height + patch - 1) // patch, (width + patch - 1) // patch))
    noisy = smooth + offsets[y // patch, x // patch]
    return np.round(smooth).astype(np.uint8)[..., None].repeat(3, 2), np.round(noisy).clip(0, 255).astype(
        np.uint8)[..., None].repeat(3, 2)


def psnr(a, b):
    return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_seams_are_smoothed_towards_the_truth():
    truth, decoded = blocky()
    filtered = deblock(decoded.copy(), 32, Deblocking(threshold=32, span=4))
    assert psnr(truth, filtered) > psnr(truth, decoded) + 0.3
    border = np.abs(filtered[:, 32].astype(int) - filtered[:, 31]).mean()
    assert border < np.abs(decoded[:, 32].astype(int) - decoded[:, 31]).mean() / 2


def test_a_real_edge_above_the_threshold_is_kept():
    image = np.zeros((32, 64, 1), dtype=np.uint8)
    image[:, 32:] = 200  # a step of 200 at the patch border: the picture, not a seam
    assert np.array_equal(deblock(image.copy(), 32, Deblocking(threshold=64, span=4)), image)


def test_only_the_pixels_within_the_span_of_a_border_change():
    _, decoded = blocky(height=32, width=64)
    filtered = deblock(decoded.copy(), 32, Deblocking(threshold=255, span=3))
    changed = np.nonzero((filtered != decoded).any(axis=(0, 2)))[0]
    assert changed.size and changed.min() >= 29 and changed.max() <= 34


@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 40, 1), (33, 33, 3), (70, 45, 3)])
def test_any_size_and_a_cropped_last_patch_are_filtered_deterministically(shape):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    first = deblock(image.copy(), 32, Deblocking(threshold=255, span=8))
    assert first.shape == image.shape and first.dtype == np.uint8
    assert np.array_equal(first, deblock(image.copy(), 32, Deblocking(threshold=255, span=8)))


@pytest.mark.parametrize("bad", [{"threshold": 0, "span": 2}, {"threshold": 300, "span": 2},
                                 {"threshold": float("nan"), "span": 2}, {"threshold": 10, "span": 0},
                                 {"threshold": 10, "span": 1.5}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        Deblocking(**bad)


def test_settings_round_trip_and_refuse_unknown_fields():
    settings = Deblocking(threshold=12.5, span=3)
    assert Deblocking.from_dict(settings.to_dict()) == settings
    with pytest.raises(ValueError):
        Deblocking.from_dict({"threshold": 1.0, "span": 2, "extra": 1})
