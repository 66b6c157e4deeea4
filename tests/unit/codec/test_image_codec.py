"""The image codec end to end: fit, quantise, code, pack, and back; a fuzzed decoder; the CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from metasparse.codec.build import build_codec
from metasparse.codec.format.bitstream import Header, container_bytes, pack, unpack
from metasparse.codec.model import ImageCodec
from metasparse.config import ProblemConfig, RunConfig, build_problem
from metasparse.errors import BitstreamError, ConfigError, DataError, ModelError
from metasparse.meta.engine import MetaConfig
from metasparse.meta.fit import FitConfig
from metasparse.nn.siren import ModelConfig

PATCH = 8


def tiny_codec(seed: int = 0) -> ImageCodec:
    config = RunConfig(
        model=ModelConfig(kind="siren", width=8, depth=2, w0=30.0),
        problem=ProblemConfig(kind="mscn-modulations"),
        meta=MetaConfig(inner_steps=2, meta_sgd=True, meta_sgd_init=(0.005, 0.1)),
    )
    meta = build_problem(config, None).init_meta(torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed)
    patches = torch.randint(0, 256, (48, PATCH, PATCH, 3), generator=generator, dtype=torch.uint8)
    encoder = FitConfig(steps=2, optimizer="inner", batch_size=64)
    return build_codec(config, meta, patches, [4, 16], encoder, patch_size=PATCH)


@pytest.fixture(scope="module")
def codec() -> ImageCodec:
    return tiny_codec()


def smooth_image(h: int, w: int, channels: int = 3) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    planes = [128 + 100 * np.sin(x / 5 + c) * np.cos(y / 7) for c in range(channels)]
    return np.stack(planes, axis=-1).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [(8, 8), (13, 21), (1, 1), (17, 3)])
def test_round_trip_decodes_exactly_what_the_encoder_reported(codec, size) -> None:
    image = smooth_image(*size)
    for quality in (1, 2):
        result = codec.compress(image, quality)
        decoded = codec.decompress(result.data)
        assert decoded.shape == image.shape and decoded.dtype == np.uint8
        assert np.array_equal(decoded, result.reconstruction)
        assert result.bpp == pytest.approx(8 * len(result.data) / (size[0] * size[1]))
        header, payload = unpack(result.data, expected_model_id=codec.model_id)
        assert (header.height, header.width, header.quality_index) == (size[0], size[1], quality - 1)
        assert len(result.data) - len(payload) == container_bytes(header) == 25
        assert header.num_patches == -(-size[0] // PATCH) * -(-size[1] // PATCH)


def test_files_of_format_version_1_still_decode(codec) -> None:
    """A file as the first release wrote it (51-byte container) decodes to the same image; one whose
    settings disagree with the model is refused."""
    image = smooth_image(13, 21)
    result = codec.compress(image, 2)
    _, payload = unpack(result.data)
    level = codec.level(2)
    old = Header(model_id=codec.model_id, height=13, width=21, channels=3, bit_depth=8, quality_index=1,
                 patch_size=PATCH, quant_bits=level.quantizer.bits, clip_std=level.quantizer.clip_std, version=1)
    v1 = pack(old, payload)
    assert len(v1) == len(result.data) + 26
    assert np.array_equal(codec.decompress(v1), result.reconstruction)
    for change in ({"quant_bits": level.quantizer.bits + 1}, {"patch_size": PATCH + 1}):
        with pytest.raises(BitstreamError, match="not match"):
            codec.decompress(pack(dataclasses.replace(old, **change), payload))


def test_more_modulations_cost_more_bytes_and_fit_better(codec) -> None:
    image = smooth_image(32, 32)
    low, high = codec.compress(image, 1), codec.compress(image, 2)
    assert len(high.data) > len(low.data)
    assert high.psnr > low.psnr - 0.5  # an untrained net: no strict gain, but never much worse


def test_greyscale_comes_back_greyscale(codec) -> None:
    grey = smooth_image(10, 12, channels=1)[:, :, 0]
    result = codec.compress(grey)
    decoded = codec.decompress(result.data)
    assert decoded.shape == (10, 12, 1)
    assert unpack(result.data)[0].channels == 1


def test_bad_images_are_refused(codec) -> None:
    with pytest.raises(DataError):
        codec.compress(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(DataError):
        codec.compress(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(DataError):
        codec.compress(np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(ConfigError):
        codec.compress(smooth_image(4, 4), quality=3)


def test_batched_compression_equals_one_by_one(codec) -> None:
    images = [smooth_image(9, 9), smooth_image(16, 24)]
    together = codec.compress_images(images, 2)
    alone = [codec.compress(im, 2) for im in images]
    for a, b in zip(together, alone):
        assert np.array_equal(codec.decompress(a.data), codec.decompress(b.data))
        assert abs(len(a.data) - len(b.data)) <= 4


def test_save_load_keeps_the_model_and_its_id(codec, tmp_path) -> None:
    path = tmp_path / "codec.safetensors"
    codec.save(path)
    loaded = ImageCodec.load(path)
    assert loaded.model_id == codec.model_id
    data = codec.compress(smooth_image(12, 12)).data
    assert np.array_equal(loaded.decompress(data), codec.decompress(data))


def test_a_file_from_another_model_is_refused(codec) -> None:
    other = tiny_codec(seed=1)
    data = other.compress(smooth_image(8, 8)).data
    with pytest.raises(BitstreamError, match="different model"):
        codec.decompress(data)


def test_the_model_id_covers_the_architecture(codec) -> None:
    """Same weights, another w0: the shifts would decode to another image, so the id differs."""
    changed = dataclasses.replace(codec.config, model=dataclasses.replace(codec.config.model, w0=60.0))
    other = ImageCodec(changed, codec.meta, codec.levels, codec.encoder, PATCH)
    assert other.model_id != codec.model_id
    with pytest.raises(BitstreamError, match="different model"):
        other.decompress(codec.compress(smooth_image(8, 8)).data)


def test_inconsistent_quality_levels_are_refused(codec) -> None:
    from metasparse.codec.model import QualityLevel

    level = codec.levels[0]
    wider = dataclasses.replace(level.quantizer, bits=level.quantizer.bits + 1)
    for bad in (QualityLevel(level.budget, wider, level.symbol_model),
                QualityLevel(codec.num_modulations + 1, level.quantizer, level.symbol_model)):
        with pytest.raises(ModelError):
            ImageCodec(codec.config, codec.meta, [bad], codec.encoder, PATCH)


def test_a_non_codec_model_file_is_refused(tmp_path) -> None:
    (tmp_path / "x.safetensors").write_bytes(b"not a model")
    with pytest.raises(ModelError):
        ImageCodec.load(tmp_path / "x.safetensors")


def test_absurd_patch_counts_with_a_tiny_payload_are_refused(codec) -> None:
    data = codec.compress(smooth_image(8, 8), 2).data
    header, payload = unpack(data)
    huge = dataclasses.replace(header, height=8000, width=8000)
    with pytest.raises(BitstreamError):
        codec.decompress(pack(huge, payload))


def test_fuzzed_files_fail_cleanly(codec) -> None:
    """Hundreds of mutated files: each decodes to an image of the announced size or is refused
    with a BitstreamError, never another exception."""
    rng = np.random.default_rng(0)
    original = codec.compress(smooth_image(20, 20), 2).data
    header, payload = unpack(original)
    outcomes = {"refused": 0, "decoded": 0}
    for trial in range(300):
        kind = trial % 4
        data = bytearray(original)
        if kind == 0:  # random byte flips anywhere (caught by the checksum or the field checks)
            for _ in range(rng.integers(1, 4)):
                data[rng.integers(len(data))] ^= int(rng.integers(1, 256))
        elif kind == 1:  # truncation or trailing garbage
            cut = int(rng.integers(0, len(data)))
            data = data[:cut] if trial % 8 == 1 else data + bytes(rng.integers(0, 256, cut % 7 + 1, dtype=np.uint8))
        elif kind == 2:  # a re-checksummed corrupt payload: the entropy decoder's own robustness
            body = bytearray(payload) or bytearray(b"\0")
            body[rng.integers(len(body))] ^= int(rng.integers(1, 256))
            if rng.random() < 0.3:
                body = body[: rng.integers(0, len(body) + 1)]
            data = bytearray(pack(header, bytes(body)))
        else:  # re-checksummed headers with other field values
            field = ["height", "width", "quality_index", "quant_bits", "patch_size", "channels"][trial % 6]
            value = int(rng.choice([0, 1, 2, 3, 7, 255, 65535]))
            changed = dataclasses.replace(header, **{field: value})
            try:
                data = bytearray(pack(changed, payload))
            except BitstreamError:
                outcomes["refused"] += 1
                continue
        try:
            image = codec.decompress(bytes(data))
        except BitstreamError:
            outcomes["refused"] += 1
        else:
            h, _ = unpack(bytes(data))
            assert image.shape[:2] == (h.height, h.width)
            outcomes["decoded"] += 1
    assert outcomes["refused"] > 200


def test_header_rejects_zero_sized_images() -> None:
    with pytest.raises(BitstreamError):
        pack(Header(model_id=b"\0" * 16, height=0, width=0, channels=3, bit_depth=8, patch_size=32,
                    quality_index=0, quant_bits=4, clip_std=3.0), b"")


def _candidate(bits: int, psnr: float, rate: float):
    from metasparse.codec.build import _BitsCandidate

    return _BitsCandidate(quantizer=bits, model=None, psnr=psnr, bits_per_signal=rate)


def test_bit_choice_takes_the_fewest_bits_within_the_loss_and_above_the_previous_rate() -> None:
    from metasparse.codec.build import _choose_bits

    made = []

    def candidates(table):
        for c in table:
            made.append(c.quantizer)
            yield c

    table = [_candidate(3, 18.0, 40.0), _candidate(4, 19.6, 55.0), _candidate(5, 19.9, 70.0), _candidate(6, 20.0, 85.0)]
    # Within 0.5 dB of 20.0 dB: 4 bits, and only the candidates up to it are made.
    assert _choose_bits(candidates(table), 20.0, 0.5, 0.0).quantizer == 4 and made == [3, 4]
    # The level below already costs 60 bits: 4 bits (55) would give a smaller file at a higher quality.
    assert _choose_bits(iter(table), 20.0, 0.5, 60.0).quantizer == 5
    # Nothing qualifies: the most bits.
    assert _choose_bits(iter(table), 25.0, 0.5, 0.0).quantizer == 6
    with pytest.raises(ConfigError):
        _choose_bits(iter([]), 20.0, 0.5, 0.0)


def test_a_clip_the_file_format_cannot_hold_is_refused_when_the_codec_is_made() -> None:
    config = RunConfig(model=ModelConfig(kind="siren", width=8, depth=2, w0=30.0),
                       problem=ProblemConfig(kind="mscn-modulations"))
    meta = build_problem(config, None).init_meta(torch.Generator().manual_seed(0))
    patches = torch.zeros((4, PATCH, PATCH, 3), dtype=torch.uint8)
    for clip in (1e5, 1e-8):
        with pytest.raises(ModelError, match="float16"):
            build_codec(config, meta, patches, [4], FitConfig(steps=1, optimizer="inner"), clip_std=clip,
                        patch_size=PATCH)


def test_budgets_must_increase() -> None:
    config = RunConfig(model=ModelConfig(kind="siren", width=8, depth=2, w0=30.0),
                       problem=ProblemConfig(kind="mscn-modulations"))
    meta = build_problem(config, None).init_meta(torch.Generator().manual_seed(0))
    patches = torch.zeros((4, PATCH, PATCH, 3), dtype=torch.uint8)
    with pytest.raises(ConfigError, match="increase"):
        build_codec(config, meta, patches, [16, 4], FitConfig(steps=1, optimizer="inner"), patch_size=PATCH)
    with pytest.raises(ConfigError, match="no budgets"):
        build_codec(config, meta, patches, [], FitConfig(steps=1, optimizer="inner"), patch_size=PATCH)


def test_deblocking_is_part_of_the_model_and_the_decoder_applies_it(codec, tmp_path) -> None:
    from metasparse.codec.format.deblock import Deblocking

    filtered = codec.with_deblocking([Deblocking(threshold=255, span=2), None])
    assert filtered.model_id != codec.model_id  # a file is never decoded without the filter it was made with
    assert codec.with_deblocking([None, None]).model_id == codec.model_id  # models made without it keep their id
    image = smooth_image(21, 27)
    plain, smoothed = codec.compress(image, 1), filtered.compress(image, 1)
    # The same symbols: the filter changes only what they decode to.
    assert unpack(plain.data, codec.model_id)[1] == unpack(smoothed.data, filtered.model_id)[1]
    assert not np.array_equal(plain.reconstruction, smoothed.reconstruction)
    assert np.array_equal(filtered.decompress(smoothed.data), smoothed.reconstruction)
    assert np.array_equal(filtered.compress(image, 2).reconstruction, codec.compress(image, 2).reconstruction)
    filtered.save(tmp_path / "codec.safetensors")
    loaded = ImageCodec.load(tmp_path / "codec.safetensors")
    assert loaded.model_id == filtered.model_id and loaded.levels[0].deblocking == Deblocking(255, 2)
    assert np.array_equal(loaded.decompress(smoothed.data), smoothed.reconstruction)


def test_deblocking_is_tuned_on_training_crops_and_kept_only_where_it_gains(codec) -> None:
    from metasparse.codec.build import tune_deblocking

    crops = [smooth_image(32, 32) for _ in range(2)]
    tuned = tune_deblocking(codec, crops)
    assert tuned.num_qualities == codec.num_qualities
    assert any(level.deblocking is not None for level in tuned.levels)
    for quality, level in enumerate(tuned.levels, 1):
        if level.deblocking is None:
            continue
        with_filter = np.mean([r.psnr for r in tuned.compress_images(crops, quality)])
        without = np.mean([r.psnr for r in codec.compress_images(crops, quality)])
        assert with_filter > without


def test_the_equal_rate_grid_shows_each_codec_at_the_closest_rate_not_above_ours(codec, tmp_path) -> None:
    from metasparse.codec.format.deblock import Deblocking
    from metasparse.codec.rd import at_rate, equal_rate_grid

    image = smooth_image(48, 64)
    decoded, bpp = at_rate("jpeg", image, 2.0)
    assert decoded.shape == image.shape and bpp <= 2.0
    assert at_rate("jpeg", image, 4.0)[1] > bpp  # a higher target gets a higher setting
    filtered = codec.with_deblocking([Deblocking(threshold=255, span=2)] * 2)
    panels = equal_rate_grid(filtered, image, 2, tmp_path / "grid.png", name="smooth", codecs=("jpeg",))
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    by_name = {p["codec"]: p for p in panels}
    assert set(by_name) == {"metasparse", "metasparse, no deblocking", "jpeg"}
    jpeg_lowest = at_rate("jpeg", image, 0.0)[1]
    assert by_name["jpeg"]["bpp"] <= max(by_name["metasparse"]["bpp"], jpeg_lowest)


def test_a_read_only_image_compresses_without_a_warning(codec) -> None:
    import warnings

    image = smooth_image(16, 16)
    image.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = codec.compress(image, 1)
    assert np.array_equal(result.reconstruction, codec.compress(image.copy(), 1).reconstruction)
