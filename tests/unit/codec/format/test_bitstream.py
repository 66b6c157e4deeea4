import dataclasses
import os
import struct
import time
import zlib

import numpy as np
import pytest
import torch

from metasparse.codec.format.bitstream import (
    FORMAT_VERSION,
    MIN_FILE_BYTES,
    Header,
    container_bytes,
    model_id_from_parts,
    pack,
    unpack,
)
from metasparse.data.tiling import patch_grid
from metasparse.errors import BitstreamError
from metasparse.utils.fileio import write_atomic

MODEL_ID = bytes(range(16))
OTHER_MODEL_ID = bytes(range(16, 32))
V1_LAYOUT = struct.Struct("<4sB16sIIBBHBBfII")

# Byte offsets of version 1's header fields (see the layout in metasparse.codec.format.bitstream).
OFFSET_HEIGHT, OFFSET_WIDTH, OFFSET_PATCHES, OFFSET_PAYLOAD_LENGTH = 21, 25, 39, 43
# Version 2 of a 70x45 image: magic 0-3, version 4, id 5-12, height 13, width 14, channels/depth 15,
# quality 16, patch size 17, bits 18, clip 19-20, payload from 21.
OFFSET_V2_HEIGHT, OFFSET_V2_CHANNELS, OFFSET_V2_QUALITY, OFFSET_V2_PATCH, OFFSET_V2_BITS, OFFSET_V2_CLIP = (
    13, 15, 16, 17, 18, 19)


def _header(**changes) -> Header:
    fields = {"model_id": MODEL_ID, "height": 70, "width": 45, "channels": 3, "bit_depth": 8, "patch_size": 32,
              "quality_index": 2, "quant_bits": 6, "clip_std": 3.0}
    fields.update(changes)
    return Header(**fields)


def _header_v1(**changes) -> Header:
    return _header(**{"version": 1, **changes})


PAYLOAD = bytes(range(7, 47))
ORIGINAL = pack(_header(), PAYLOAD)
ORIGINAL_V1 = pack(_header_v1(), PAYLOAD)


def _with_valid_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _raw_v1_file(payload: bytes = PAYLOAD, **fields) -> bytes:
    """A version-1 file with arbitrary header fields and a correct checksum, bypassing pack's validation."""
    header = _header_v1()
    values = {"magic": b"MSPZ", "version": 1, "model_id": MODEL_ID, "height": header.height, "width": header.width,
              "channels": header.channels, "bit_depth": header.bit_depth, "patch_size": header.patch_size,
              "quality_index": header.quality_index, "quant_bits": header.quant_bits,
              "clip_std": header.clip_std, "num_patches": 6,  # ceil(70 / 32) * ceil(45 / 32) = 3 * 2
              "payload_length": len(payload)}
    values.update(fields)
    return _with_valid_crc(V1_LAYOUT.pack(*values.values()) + payload)


def _raw_v2_file(height: bytes = b"\x46", width: bytes = b"\x2d", packed: int = 0x27, quality: int = 2,
                 patch: bytes = b"\x20", bits: int = 5, clip: bytes = struct.pack("<e", 3.0),
                 payload: bytes = PAYLOAD) -> bytes:
    """A version-2 file from raw field bytes (70x45, 3 channels, 8 bits, 32-pixel patches, 6 bits,
    clip 3) with a correct checksum."""
    return _with_valid_crc(b"MSPZ\x02" + MODEL_ID[:8] + height + width + bytes([packed, quality]) + patch
                           + bytes([bits]) + clip + payload)


# -- version 2, the format written -----------------------------------------------------------------
def test_round_trip_restores_header_and_payload() -> None:
    header, payload = unpack(ORIGINAL, expected_model_id=MODEL_ID)
    assert header == _header() and header.version == FORMAT_VERSION == 2
    assert payload == PAYLOAD
    assert ORIGINAL == _raw_v2_file()  # the layout is the documented one, byte for byte
    assert ORIGINAL[:4] == b"MSPZ"


def test_the_container_costs_25_bytes_on_small_images_and_grows_with_the_size_fields() -> None:
    assert container_bytes(_header()) == MIN_FILE_BYTES == 25 == len(ORIGINAL) - len(PAYLOAD)
    assert container_bytes(_header(height=32, width=32)) == 25  # CIFAR-10: 0.20 bpp
    assert container_bytes(_header(height=512, width=768)) == 27
    assert container_bytes(_header(height=32, width=1024, patch_size=1024)) == 27  # a 32^3 voxel grid
    assert container_bytes(_header(height=(1 << 32) - 1, width=1, bit_depth=16)) == 29
    assert container_bytes(_header_v1()) == 51


def test_the_clip_is_stored_as_float16_in_version_2_and_float32_in_version_1() -> None:
    assert _header(clip_std=2.7).clip_std == float(np.float16(2.7)) != float(np.float32(2.7))
    assert _header_v1(clip_std=2.7).clip_std == float(np.float32(2.7))
    for header in (_header(clip_std=2.7), _header_v1(clip_std=2.7)):
        assert unpack(pack(header, b""))[0] == header
    with pytest.raises(BitstreamError, match="clip"):
        pack(_header(clip_std=70000.0), b"")  # beyond float16; version 1 holds it
    assert unpack(pack(_header_v1(clip_std=70000.0), b""))[0].clip_std == 70000.0


def test_sizes_that_need_every_varint_byte_round_trip() -> None:
    for height, width in [(1, 1), (127, 128), (16383, 16384), ((1 << 32) - 1, 1)]:
        header = _header(height=height, width=width, channels=1, bit_depth=16, patch_size=min(height, width, 4096))
        assert unpack(pack(header, b"x", max_pixels=1 << 40), max_pixels=1 << 40)[0] == header


def test_clips_that_float16_cannot_hold_are_named_with_their_value() -> None:
    for clip in (1e5, 1e-8):
        with pytest.raises(BitstreamError, match=f"invalid quantisation clip {clip} .*float16"):
            pack(_header(clip_std=clip), b"")


def test_a_thin_image_in_large_patches_cannot_announce_far_more_padded_pixels_than_the_limit() -> None:
    with pytest.raises(BitstreamError, match="padded pixels"):
        pack(_header(height=1 << 28, width=1, patch_size=8), b"")
    assert unpack(pack(_header(height=100_000, width=1, patch_size=32), b""))[0].num_patches == 3125


def test_the_file_keeps_an_8_byte_prefix_of_the_model_id() -> None:
    header, _ = unpack(ORIGINAL)
    assert header.model_id == MODEL_ID[:8] and header.matches_model(MODEL_ID)
    assert not header.matches_model(OTHER_MODEL_ID)


def test_an_empty_payload_is_allowed() -> None:
    assert unpack(pack(_header(), b""))[1] == b""


def test_patch_grid_covers_the_image_with_padded_edge_patches() -> None:
    assert patch_grid(70, 45, 32)[0] == (3, 2)
    assert patch_grid(64, 64, 32)[0] == (2, 2)
    assert patch_grid(1, 1, 32)[0] == (1, 1)


@pytest.mark.parametrize(
    "data, message",
    [
        pytest.param(b"GIF89a" + ORIGINAL[6:], "not a metasparse", id="other-format"),
        pytest.param(b"", "truncated", id="empty"),
        pytest.param(ORIGINAL[:3], "truncated", id="magic-only"),
        pytest.param(ORIGINAL[:MIN_FILE_BYTES - 1], "truncated", id="shorter-than-any-file"),
        pytest.param(ORIGINAL[:-1], "corrupt or truncated", id="last-byte-missing"),
        pytest.param(ORIGINAL[:4] + bytes([FORMAT_VERSION + 1]) + ORIGINAL[5:], "unsupported format version",
                     id="version"),
        pytest.param(ORIGINAL[:4] + b"\x00" + ORIGINAL[5:], "unsupported format version", id="version-0"),
        pytest.param(ORIGINAL[:-4] + b"\x00" + ORIGINAL[-4:], "checksum", id="extra-byte"),
        pytest.param(ORIGINAL[:30] + bytes([ORIGINAL[30] ^ 0x10]) + ORIGINAL[31:], "checksum", id="payload-bit"),
        pytest.param(ORIGINAL[:OFFSET_V2_CLIP] + bytes([ORIGINAL[OFFSET_V2_CLIP] ^ 1]) + ORIGINAL[OFFSET_V2_CLIP + 1:], "checksum",
                     id="clip-byte"),
        pytest.param(ORIGINAL[:-1] + bytes([ORIGINAL[-1] ^ 1]), "checksum mismatch", id="crc-bit"),
        pytest.param(_raw_v2_file(height=b"\x00"), "invalid image size", id="zero-height"),
        pytest.param(_raw_v2_file(width=b"\x80\x00"), "not minimally encoded", id="overlong-varint"),
        pytest.param(_raw_v2_file(height=b"\xff" * 5 + b"\x01"), "longer than 5 bytes", id="six-byte-varint"),
        pytest.param(_raw_v2_file(height=b"\xff\xff\xff\xff\x1f"), "invalid image size", id="height-over-u32"),
        pytest.param(_with_valid_crc(b"MSPZ\x02" + MODEL_ID[:8] + b"\x46\x2d\x27\x02" + b"\xff" * 4),
                     "ends before the patch size", id="unterminated-varint"),
        pytest.param(_with_valid_crc(b"MSPZ\x02" + MODEL_ID[:8] + b"\x46\x2d\x27" + b"\x00" * 4), "truncated",
                     id="header-cut-short"),
        pytest.param(_raw_v2_file(patch=b"\x00"), "patch size", id="zero-patch"),
        pytest.param(_raw_v2_file(patch=b"\x80\x80\x04"), "patch size", id="patch-over-65535"),
        pytest.param(_raw_v2_file(bits=0x25), "reserved bits", id="bits-reserved"),
        pytest.param(_raw_v2_file(clip=struct.pack("<e", 0.0)), "clip", id="clip-zero"),
        pytest.param(_raw_v2_file(clip=struct.pack("<e", float("nan"))), "clip", id="clip-nan"),
        pytest.param(_raw_v2_file(clip=struct.pack("<e", float("inf"))), "clip", id="clip-inf"),
        pytest.param(_raw_v2_file(clip=struct.pack("<e", -3.0)), "clip", id="clip-negative"),
        pytest.param(_raw_v2_file(packed=0x67), "reserved bits", id="reserved-bits"),
        pytest.param(_raw_v2_file(packed=0x47), "channel", id="five-channels"),
        pytest.param(_raw_v2_file(height=b"\x80\x80\x04", width=b"\x80\x40"), "exceeds the limit",
                     id="too-many-pixels"),
    ],
)
def test_damaged_files_are_reported_with_a_clear_message(data: bytes, message: str) -> None:
    with pytest.raises(BitstreamError, match=message):
        unpack(data)


def test_a_file_from_another_model_names_both_ids() -> None:
    with pytest.raises(BitstreamError, match="different model") as error:
        unpack(ORIGINAL, expected_model_id=OTHER_MODEL_ID)
    assert MODEL_ID[:8].hex() in str(error.value) and OTHER_MODEL_ID[:8].hex() in str(error.value)
    assert "--model" in str(error.value) and "\n" not in str(error.value)


def test_pixel_limit_is_configurable() -> None:
    with pytest.raises(BitstreamError, match="exceeds the limit"):
        unpack(ORIGINAL, max_pixels=70 * 45 - 1)
    assert unpack(ORIGINAL, max_pixels=70 * 45)[1] == PAYLOAD


def test_pack_refuses_inconsistent_headers() -> None:
    with pytest.raises(BitstreamError, match="patch size"):
        pack(_header(patch_size=0), b"")
    with pytest.raises(BitstreamError, match="model id"):
        pack(_header(model_id=b"short"), b"")
    with pytest.raises(BitstreamError, match="version"):
        pack(dataclasses.replace(_header(), version=FORMAT_VERSION + 1), b"")
    with pytest.raises(BitstreamError, match="quality index"):
        pack(_header(quality_index=256), b"")


def _fuzz(original: bytes, expected: tuple[Header, bytes], inflate: list[tuple[int, int]], version: int) -> None:
    rng = np.random.default_rng(1234)
    mutants: list[bytes] = []
    mutants += [original[:length] for length in range(len(original))]
    for bit in range(len(original) * 8):
        flipped = bytearray(original)
        flipped[bit // 8] ^= 1 << (bit % 8)
        mutants.append(bytes(flipped))
    for _ in range(200):
        mutants.append(rng.bytes(int(rng.integers(0, 2 * len(original)))))
        mutants.append(b"MSPZ" + bytes([version]) + rng.bytes(int(rng.integers(0, 2 * len(original)))))
    for _ in range(200):
        mutated = bytearray(original)
        for position in rng.integers(0, len(mutated), size=int(rng.integers(1, 6))):
            mutated[position] = int(rng.integers(0, 256))
        mutants.append(bytes(mutated))
    # Fields rewritten, and rewritten with a matching checksum: a version-2 header has no redundancy,
    # so those may be valid files of another image (the codec then checks the payload against them).
    rechecksummed = set()
    for offset, size in inflate:
        for value in (0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 20):
            inflated = bytearray(original)
            inflated[offset : offset + size] = (value % (1 << 8 * size)).to_bytes(size, "little")
            mutants.append(bytes(inflated))
            rechecksummed.add(_with_valid_crc(bytes(inflated[:-4])))
    mutants += sorted(rechecksummed)
    mutants.append(original + rng.bytes(3))
    mutants.append(original * 2)

    assert len(mutants) > 900
    start = time.perf_counter()
    rejected = 0
    for mutant in mutants:
        try:
            header, payload = unpack(mutant, expected_model_id=MODEL_ID)
        except BitstreamError:
            rejected += 1
        else:
            assert (header, payload) == expected or (version == 2 and mutant in rechecksummed)
    assert time.perf_counter() - start < 5.0
    # At most the odd mutation that rewrites a byte to itself, and the valid re-checksummed files.
    assert rejected >= len(mutants) - 2 - (len(rechecksummed) if version == 2 else 0)


def test_fuzzed_files_raise_bitstream_error_or_decode_to_the_original() -> None:
    fields = [(OFFSET_V2_HEIGHT, 1), (OFFSET_V2_CHANNELS, 1), (OFFSET_V2_QUALITY, 1), (OFFSET_V2_PATCH, 1),
              (OFFSET_V2_BITS, 1), (OFFSET_V2_CLIP, 2)]
    _fuzz(ORIGINAL, (_header(), PAYLOAD), fields, 2)


# -- version 1, read for files made before -----------------------------------------------------------
def test_version_1_files_still_read() -> None:
    header, payload = unpack(ORIGINAL_V1, expected_model_id=MODEL_ID)
    assert header == _header_v1() and header.model_id == MODEL_ID and payload == PAYLOAD
    assert len(ORIGINAL_V1) == len(PAYLOAD) + 51
    assert ORIGINAL_V1 == _raw_v1_file()


@pytest.mark.parametrize(
    "data, message",
    [
        pytest.param(ORIGINAL_V1[:47], "truncated", id="header-only"),
        pytest.param(ORIGINAL_V1[:-1], "truncated", id="last-byte-missing"),
        pytest.param(ORIGINAL_V1[:-4] + b"\x00" + ORIGINAL_V1[-4:], "unexpected bytes", id="extra-byte"),
        pytest.param(ORIGINAL_V1[:60] + bytes([ORIGINAL_V1[60] ^ 0x10]) + ORIGINAL_V1[61:], "checksum",
                     id="payload-bit"),
    ],
)
def test_damaged_version_1_files_are_reported_with_a_clear_message(data: bytes, message: str) -> None:
    with pytest.raises(BitstreamError, match=message):
        unpack(data)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"height": 0}, "invalid image size"),
        ({"width": 0, "num_patches": 0}, "invalid image size"),
        ({"height": 1 << 16, "width": 1 << 13, "num_patches": 2048 * 256}, "exceeds the limit"),
        ({"channels": 0}, "channel"),
        ({"channels": 9}, "channel"),
        ({"bit_depth": 0}, "bit depth"),
        ({"bit_depth": 17}, "bit depth"),
        ({"patch_size": 0}, "patch size"),
        ({"quant_bits": 0}, "quantisation bit"),
        ({"quant_bits": 17}, "quantisation bit"),
        ({"clip_std": 0.0}, "clip"),
        ({"clip_std": float("nan")}, "clip"),
        ({"clip_std": float("inf")}, "clip"),
        ({"num_patches": 7}, "patch count"),
        ({"num_patches": 0xFFFFFFFF}, "patch count"),
    ],
)
def test_out_of_range_version_1_fields_are_rejected_even_with_a_valid_checksum(fields: dict, message: str) -> None:
    with pytest.raises(BitstreamError, match=message):
        unpack(_raw_v1_file(**fields))


def test_inflated_version_1_payload_length_is_reported_as_truncation_without_allocating() -> None:
    with pytest.raises(BitstreamError, match="truncated"):
        unpack(_raw_v1_file(payload_length=0xFFFFFFFF))


def test_fuzzed_version_1_files_raise_bitstream_error_or_decode_to_the_original() -> None:
    offsets = [(o, 4) for o in (OFFSET_HEIGHT, OFFSET_WIDTH, OFFSET_PATCHES, OFFSET_PAYLOAD_LENGTH)]
    _fuzz(ORIGINAL_V1, (_header_v1(), PAYLOAD), offsets, 1)


def test_model_id_from_parts_hashes_names_dtypes_shapes_and_bytes() -> None:
    weight = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    parts = {"w": ("torch.float32", (2, 3), weight.tobytes()), "b": ("torch.float32", (2,), bytes(8))}
    model_id = model_id_from_parts(parts)
    assert len(model_id) == 16 and model_id_from_parts(dict(reversed(parts.items()))) == model_id
    assert model_id_from_parts({**parts, "w": ("torch.float32", (3, 2), weight.tobytes())}) != model_id
    assert model_id_from_parts({**parts, "w": ("torch.float64", (2, 3), weight.tobytes())}) != model_id
    assert model_id_from_parts({**parts, "b": ("torch.float32", (2,), bytes(7) + b"\1")}) != model_id
    # Sizes are hashed as Python ints, whatever integer type the shape holds.
    assert model_id_from_parts({**parts, "w": ("torch.float32", np.array([2, 3]), weight.tobytes())}) == model_id


def test_model_id_depends_on_every_weight_but_not_on_dict_order() -> None:
    from metasparse.codec.model import model_id_of

    weights = {"layer.weight": torch.arange(6.0).reshape(2, 3), "layer.bias": torch.zeros(2)}
    model_id = model_id_of(weights)
    # Pinned: the id of these tensors since the codec's first model files (a changed id orphans every file).
    assert model_id.hex() == "3a5bba6d917b21f90656f5b01c449a19"
    assert len(model_id) == 16
    assert model_id_of(dict(reversed(weights.items()))) == model_id
    changed = {**weights, "layer.bias": torch.tensor([0.0, 1e-7])}
    assert model_id_of(changed) != model_id
    assert model_id_of({**weights, "layer.bias": torch.zeros(2, dtype=torch.float64)}) != model_id
    assert model_id_of({**weights, "layer.weight": weights["layer.weight"].reshape(3, 2)}) != model_id
    assert model_id_of({"scalar": torch.tensor(1.0), **weights}) != model_id


def test_write_atomic_creates_and_replaces_files(tmp_path) -> None:
    target = tmp_path / "image.mspz"
    assert write_atomic(target, ORIGINAL) == target
    assert target.read_bytes() == ORIGINAL
    os.chmod(target, 0o640)
    write_atomic(str(target), b"second")
    assert target.read_bytes() == b"second"
    assert target.stat().st_mode & 0o777 == 0o640
    write_atomic(tmp_path / "notes.txt", "caf\u00e9")
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "caf\u00e9"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.mspz", "notes.txt"]


def test_write_atomic_leaves_the_old_file_intact_when_writing_fails(tmp_path) -> None:
    target = tmp_path / "results.json"
    target.write_bytes(b"old")

    class Unwritable:
        """Not bytes-like, so the write itself fails after the temporary file exists."""

    with pytest.raises(TypeError):
        write_atomic(target, Unwritable())  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_write_atomic_to_a_missing_directory_fails_cleanly(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "file.bin", b"x")
