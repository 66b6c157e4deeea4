import numpy as np
import pytest
from PIL import Image

from metasparse.data.transforms import (
    TRANSFORMS,
    CenterCrop,
    Compose,
    CropResize,
    Identity,
    Resize,
    ResizeShortCrop,
    Transform,
    available_transforms,
    parse_transform,
    register_transform,
)
from metasparse.errors import DataError


def rand_image(h, w, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def pil_resize(arr, h, w, resample=Image.Resampling.BICUBIC):
    return np.asarray(Image.fromarray(arr).resize((w, h), resample))


def test_center_crop_celeba_178():
    img = rand_image(218, 178)  # CelebA aligned: 178 wide, 218 tall
    out = CenterCrop(178)(img)
    assert out.shape == (178, 178, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, img[20:198])


def test_center_crop_rounds_like_torchvision():
    img = rand_image(109, 89)  # CelebA half-res
    out = CenterCrop(89)(img)
    np.testing.assert_array_equal(out, img[10:99])  # top = round(20 / 2)
    odd = rand_image(10, 10)
    np.testing.assert_array_equal(CenterCrop(7)(odd), odd[2:9, 2:9])  # round(1.5) = 2


def test_center_crop_larger_than_image_is_a_data_error():
    with pytest.raises(DataError, match="smaller than the crop"):
        CenterCrop(178)(rand_image(100, 300))


def test_resize_short_crop_imagenette():
    img = rand_image(224, 224)
    out = parse_transform("resize_short_crop:200,178")(img)
    assert out.shape == (178, 178, 3)
    np.testing.assert_array_equal(out, pil_resize(img, 200, 200)[11:189, 11:189])


def test_resize_short_crop_keeps_aspect():
    img = rand_image(300, 400)  # landscape: short side is the height
    t = ResizeShortCrop(200, 178)
    out = t(img)
    assert out.shape == (178, 178, 3)
    resized = pil_resize(img, 200, 266)  # int(200 * 400 / 300) = 266
    np.testing.assert_array_equal(out, resized[11:189, 44:222])
    portrait = ResizeShortCrop(200, 178)(rand_image(400, 300))
    assert portrait.shape == (178, 178, 3)
    assert t.output_size(300, 400) == (178, 178)


def test_crop_resize_celeba_64():
    img = rand_image(109, 89)
    out = parse_transform("crop_resize:89,64")(img)
    assert out.shape == (64, 64, 3)
    np.testing.assert_array_equal(out, pil_resize(img[10:99], 64, 64))


def test_resize_is_bicubic_and_antialiased():
    # a one-pixel checkerboard shrunk 4x must come out flat grey, not aliased stripes
    y, x = np.mgrid[:64, :64]
    board = (((y + x) % 2) * 255).astype(np.uint8)[:, :, None].repeat(3, axis=2)
    out = Resize(16)(board).astype(float)
    assert abs(out.mean() - 127.5) < 2 and out.std() < 2
    img = rand_image(40, 50)
    np.testing.assert_array_equal(Resize((20, 30))(img), pil_resize(img, 20, 30))
    lanczos = Resize((20, 30), resample="lanczos")(img)
    np.testing.assert_array_equal(lanczos, pil_resize(img, 20, 30, Image.Resampling.LANCZOS))


def test_single_channel_and_pil_inputs():
    grey = rand_image(30, 40, c=1)
    out = Resize(16)(grey)
    assert out.shape == (16, 16, 1)
    assert Resize(16)(grey[:, :, 0]).shape == (16, 16, 1)
    pil = Image.fromarray(rand_image(30, 40))
    assert CenterCrop(20)(pil).shape == (20, 20, 3)
    pal = pil.convert("P")
    assert CenterCrop(20)(pal).shape == (20, 20, 3)
    with pytest.raises(DataError, match="uint8"):
        Identity()(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(DataError, match="shape"):
        Identity()(np.zeros((4, 4, 2), np.uint8))


def test_identity_returns_input():
    img = rand_image(5, 6)
    assert Identity()(img) is img
    assert parse_transform(None) == Identity() and parse_transform("") == Identity()
    assert parse_transform("identity") == Identity()


@pytest.mark.parametrize(
    "spec",
    [
        "identity",
        "center_crop:178",
        "center_crop:178x218",
        "resize:64",
        "resize:64x32",
        "resize_short_crop:200,178",
        "crop_resize:89,64",
        "center_crop:178+resize:64",
    ],
)
def test_spec_round_trip(spec):
    t = parse_transform(spec)
    assert isinstance(t, Transform)
    assert t.spec == spec
    assert parse_transform(t.spec) == t


def test_parser_forms():
    assert parse_transform("resize_short_crop") == ResizeShortCrop(200, 178)
    assert parse_transform("center_crop:178x218").size == (218, 178)  # WxH in strings
    assert parse_transform(" Center-Crop : 32 ") == CenterCrop(32)
    chain = parse_transform("center_crop:178+resize:64")
    assert isinstance(chain, Compose)
    assert chain(rand_image(218, 178)).shape == (64, 64, 3)
    assert chain.output_size(218, 178) == (64, 64)
    assert CropResize(89, 64).output_size(109, 89) == (64, 64)
    fn = lambda a: a
    assert parse_transform(fn) is fn


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("blur:3", "unknown transform"),
        ("center_crop:abc", "bad transform argument"),
        ("center_crop:1x2x3", "bad transform argument"),
        ("crop_resize:89", "wrong number of arguments"),
        ("resize:0", "positive"),
        ("resize_short_crop:100,178", "larger than the short side"),
    ],
)
def test_parser_errors(spec, match):
    with pytest.raises(DataError, match=match):
        parse_transform(spec)


def test_bad_resample_and_type():
    with pytest.raises(DataError, match="resampling"):
        Resize(8, resample="cubic-ish")
    with pytest.raises(DataError):
        parse_transform(3)


def test_register_custom_transform():
    class Flip(Transform):
        name = "test_flip"

        def apply(self, arr):
            return arr[:, ::-1]

        def output_size(self, h, w):
            return h, w

    register_transform("test_flip", Flip)
    try:
        img = rand_image(4, 5)
        np.testing.assert_array_equal(parse_transform("test_flip")(img), img[:, ::-1])
        assert "test_flip" in available_transforms()
    finally:
        TRANSFORMS.pop("test_flip")
