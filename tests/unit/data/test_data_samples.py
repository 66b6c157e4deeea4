import numpy as np
import pytest
import torch

from metasparse.data.images import load_images
from metasparse.data.samples import (
    DEFAULT_SAMPLES,
    sample_dir,
    sample_images,
    sample_names,
    sample_signal_set,
    write_sample_images,
)
from metasparse.errors import DataError


def test_samples_are_shipped_with_scikit_image():
    names = sample_names()
    assert {"astronaut", "chelsea", "coffee", "rocket"} <= set(names)
    assert (sample_dir() / "astronaut.png").is_file()


def test_sample_images_at_native_size():
    imgs = sample_images(["astronaut", "chelsea"])
    assert [im.shape for im in imgs] == [(512, 512, 3), (300, 451, 3)]
    assert all(im.dtype == np.uint8 for im in imgs)
    assert sample_images("coffee", channels=1)[0].shape == (400, 600, 1)


def test_sample_signal_set_stacks():
    s = sample_signal_set(size=32, names=["astronaut", "chelsea", "coffee", "rocket"])
    assert s.values.shape == (4, 32, 32, 3) and s.values.dtype == torch.uint8
    assert s.names == ["astronaut", "chelsea", "coffee", "rocket"]
    assert s.scale == pytest.approx(1 / 255) and s.coords.shape == (32, 32, 2)
    assert s.values.float().std() > 10  # real photos, not blank
    rect = sample_signal_set(size=(16, 24), names=["chelsea"])
    assert rect.values.shape == (1, 16, 24, 3)
    other = sample_signal_set(names="rocket", transform="center_crop:64")
    assert other.values.shape == (1, 64, 64, 3)


def test_default_set_never_fetches(monkeypatch):
    import skimage.data._fetchers as fetchers

    def no_fetch(*args, **kwargs):
        raise AssertionError("sample images must not go through scikit-image's download cache")

    monkeypatch.setattr(fetchers, "_fetch", no_fetch)
    s = sample_signal_set(size=16)
    assert s.names == [n for n in DEFAULT_SAMPLES if n in sample_names()]
    assert len(s) >= 6


def test_write_sample_images(tmp_path):
    paths = write_sample_images(tmp_path / "photos", names=["chelsea", "coffee"], transform="resize:24")
    assert [p.name for p in paths] == ["chelsea.png", "coffee.png"]
    s = load_images(tmp_path / "photos")
    ref = sample_signal_set(names=["chelsea", "coffee"], transform="resize:24")
    assert torch.equal(s.values, ref.values)


def test_unknown_sample():
    with pytest.raises(DataError, match="unknown sample"):
        sample_images(["lena"])
