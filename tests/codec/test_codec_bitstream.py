import dataclasses
import os
import struct
import time
import zlib

import numpy as np
import pytest
import torch

from metasparse.codec.bitstream import (
    CONTAINER_OVERHEAD_BYTES,
    FORMAT_VERSION,
    HEADER_BYTES,
    Header,
    model_id_of,
    pack,
    patch_grid,
    unpack,
)
from metasparse.errors import BitstreamError
from metasparse.io import write_atomic

MODEL_ID = bytes(range(16))
OTHER_MODEL_ID = bytes(range(16, 32))
HEADER_LAYOUT = struct.Struct("<4sB16sIIBBHBBfII")

# Byte offsets of the header fields (see the layout in metasparse.codec.bitstream).
OFFSET_HEIGHT, OFFSET_WIDTH, OFFSET_PATCHES, OFFSET_PAYLOAD_LENGTH = 21, 25, 39, 43


def _header(**changes) -> Header:
    fields = {
        "model_id": MODEL_ID,
        "height": 70,
        "width": 45,
        "channels": 3,
        "bit_depth": 8,
        "patch_size": 32,
        "quality_index": 2,
        "quant_bits": 6,
        "clip_std": 3.0,
        "num_patches": 6,  # ceil(70 / 32) * ceil(45 / 32) = 3 * 2
    }
    fields.update(changes)
    return Header(**fields)


PAYLOAD = bytes(range(7, 47))
ORIGINAL = pack(_header(), PAYLOAD)


def _with_valid_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _raw_file(payload: bytes = PAYLOAD, **fields) -> bytes:
    """A file with arbitrary header fields and a correct checksum, bypassing pack's validation."""
    header = _header()
    values = {"magic": b"MSPZ", "version": FORMAT_VERSION}
    values.update(
        {f.name: getattr(header, f.name) for f in dataclasses.fields(Header) if f.name != "version"}
    )
    values["payload_length"] = len(payload)
    values.update(fields)
    return _with_valid_crc(HEADER_LAYOUT.pack(*values.values()) + payload)


def test_round_trip_restores_header_and_payload() -> None:
    header, payload = unpack(ORIGINAL, expected_model_id=MODEL_ID)
    assert header == _header()
    assert payload == PAYLOAD
    assert len(ORIGINAL) == len(PAYLOAD) + CONTAINER_OVERHEAD_BYTES
    assert HEADER_BYTES == 47
    assert ORIGINAL[:4] == b"MSPZ"


def test_clip_is_stored_as_float32_and_compares_equal_after_a_round_trip() -> None:
    header = _header(clip_std=2.7)
    assert unpack(pack(header, b""))[0] == header


def test_an_empty_payload_is_allowed() -> None:
    assert unpack(pack(_header(), b""))[1] == b""


def test_patch_grid_covers_the_image_with_padded_edge_patches() -> None:
    assert patch_grid(70, 45, 32) == (3, 2)
    assert patch_grid(64, 64, 32) == (2, 2)
    assert patch_grid(1, 1, 32) == (1, 1)


@pytest.mark.parametrize(
    "data, message",
    [
        pytest.param(b"GIF89a" + ORIGINAL[6:], "not a metasparse", id="other-format"),
        pytest.param(b"", "truncated", id="empty"),
        pytest.param(ORIGINAL[:3], "truncated", id="magic-only"),
        pytest.param(ORIGINAL[:HEADER_BYTES], "truncated", id="header-only"),
        pytest.param(ORIGINAL[:-1], "truncated", id="last-byte-missing"),
        pytest.param(
            ORIGINAL[:4] + bytes([FORMAT_VERSION + 1]) + ORIGINAL[5:],
            "unsupported format version",
            id="version",
        ),
        pytest.param(ORIGINAL[:-4] + b"\x00" + ORIGINAL[-4:], "unexpected bytes", id="extra-byte"),
        pytest.param(
            ORIGINAL[:60] + bytes([ORIGINAL[60] ^ 0x10]) + ORIGINAL[61:], "checksum", id="payload-bit"
        ),
        pytest.param(ORIGINAL[:-1] + bytes([ORIGINAL[-1] ^ 1]), "checksum mismatch", id="crc-bit"),
    ],
)
def test_damaged_files_are_reported_with_a_clear_message(data: bytes, message: str) -> None:
    with pytest.raises(BitstreamError, match=message):
        unpack(data)


def test_a_file_from_another_model_names_both_ids() -> None:
    with pytest.raises(BitstreamError, match="different model") as error:
        unpack(ORIGINAL, expected_model_id=OTHER_MODEL_ID)
    assert MODEL_ID.hex() in str(error.value) and "--model" in str(error.value)
    assert "\n" not in str(error.value)


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
        ({"patch_size": 60000}, "patch size"),
        ({"quant_bits": 0}, "quantisation bit"),
        ({"quant_bits": 17}, "quantisation bit"),
        ({"clip_std": 0.0}, "clip"),
        ({"clip_std": float("nan")}, "clip"),
        ({"clip_std": float("inf")}, "clip"),
        ({"num_patches": 7}, "patch count"),
        ({"num_patches": 0xFFFFFFFF}, "patch count"),
    ],
)
def test_out_of_range_fields_are_rejected_even_with_a_valid_checksum(fields: dict, message: str) -> None:
    with pytest.raises(BitstreamError, match=message):
        unpack(_raw_file(**fields))


def test_inflated_payload_length_is_reported_as_truncation_without_allocating() -> None:
    with pytest.raises(BitstreamError, match="truncated"):
        unpack(_raw_file(payload_length=0xFFFFFFFF))


def test_pixel_limit_is_configurable() -> None:
    with pytest.raises(BitstreamError, match="exceeds the limit"):
        unpack(ORIGINAL, max_pixels=70 * 45 - 1)
    assert unpack(ORIGINAL, max_pixels=70 * 45)[1] == PAYLOAD


def test_pack_refuses_inconsistent_headers() -> None:
    with pytest.raises(BitstreamError, match="patch count"):
        pack(_header(num_patches=5), b"")
    with pytest.raises(BitstreamError, match="model id"):
        pack(_header(model_id=b"short"), b"")
    with pytest.raises(BitstreamError, match="version"):
        pack(dataclasses.replace(_header(), version=FORMAT_VERSION + 1), b"")


def test_fuzzed_files_raise_bitstream_error_or_decode_to_the_original() -> None:
    rng = np.random.default_rng(1234)
    mutants: list[bytes] = []
    mutants += [ORIGINAL[:length] for length in range(len(ORIGINAL))]
    for bit in range(len(ORIGINAL) * 8):
        flipped = bytearray(ORIGINAL)
        flipped[bit // 8] ^= 1 << (bit % 8)
        mutants.append(bytes(flipped))
    for _ in range(200):
        mutants.append(rng.bytes(int(rng.integers(0, 2 * len(ORIGINAL)))))
        mutants.append(b"MSPZ" + bytes([FORMAT_VERSION]) + rng.bytes(int(rng.integers(0, 2 * len(ORIGINAL)))))
    for _ in range(200):
        mutated = bytearray(ORIGINAL)
        for position in rng.integers(0, len(mutated), size=int(rng.integers(1, 6))):
            mutated[position] = int(rng.integers(0, 256))
        mutants.append(bytes(mutated))
    for offset in (OFFSET_HEIGHT, OFFSET_WIDTH, OFFSET_PATCHES, OFFSET_PAYLOAD_LENGTH):
        for value in (0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 20):
            inflated = bytearray(ORIGINAL)
            inflated[offset : offset + 4] = value.to_bytes(4, "little")
            mutants.append(bytes(inflated))
            mutants.append(_with_valid_crc(bytes(inflated[:-4])))  # ... and with a matching checksum
    mutants.append(ORIGINAL + rng.bytes(3))
    mutants.append(ORIGINAL * 2)

    assert len(mutants) > 1000
    start = time.perf_counter()
    rejected = 0
    for mutant in mutants:
        try:
            header, payload = unpack(mutant, expected_model_id=MODEL_ID)
        except BitstreamError:
            rejected += 1
        else:
            assert (header, payload) == (_header(), PAYLOAD)
    assert time.perf_counter() - start < 5.0
    assert rejected >= len(mutants) - 2  # at most the odd mutation that rewrites a byte to itself


def test_model_id_depends_on_every_weight_but_not_on_dict_order() -> None:
    weights = {"layer.weight": torch.arange(6.0).reshape(2, 3), "layer.bias": torch.zeros(2)}
    model_id = model_id_of(weights)
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
