"""The compressed-file container: a small header, the entropy-coded payload, and a CRC32.

Version 2 (written) stores only what the model cannot tell the decoder; integers little-endian,
sizes as unsigned LEB128 varints (one byte up to 127, at most five)::

    size  field
       4  magic b"MSPZ"
       1  format version (u8) = 2
       8  model id: the first 8 bytes of the model's 16-byte id
     1-5  image height (varint)
     1-5  image width (varint)
       1  (channels - 1) << 4 | (source bit depth - 1); the top two bits are zero
       1  quality index (u8: which modulation budget)
       n  payload: everything up to the checksum
       4  CRC32 of every byte before it

That is 21 bytes besides the payload for an image up to 127 pixels a side (a 32x32 CIFAR image:
0.16 bpp), where version 1 spent 51 (0.40 bpp). Patch size, quantiser bits and clip, and the patch
count follow from the model (whose id covers its quality levels) and the image size.

Version 1 (read, for files made before) has a fixed 47-byte header::

    offset size  field
         0    4  magic b"MSPZ"
         4    1  format version (u8) = 1
         5   16  model id
        21    4  image height (u32)
        25    4  image width (u32)
        29    1  channels (u8)
        30    1  source bit depth (u8)
        31    2  patch size (u16)
        33    1  quality index (u8)
        34    1  quantisation bits (u8)
        35    4  quantisation clip in std units (f32)
        39    4  number of patches (u32)
        43    4  payload length in bytes (u32)
        47    n  payload
      47+n    4  CRC32 of bytes [0, 47+n)

:func:`unpack` checks every field before anything is allocated or decoded from it and raises
``BitstreamError`` with a one-line message for each kind of failure.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from metasparse.errors import BitstreamError
from metasparse.io import write_atomic

MAGIC = b"MSPZ"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MODEL_ID_BYTES = 16
# A model id prefix of 64 bits: two models mistaken for each other once in 1.8e19.
STORED_MODEL_ID_BYTES = {1: MODEL_ID_BYTES, 2: 8}

_V1_HEADER = struct.Struct("<4sB16sIIBBHBBfII")
_CRC = struct.Struct("<I")
_MAX_VARINT_BYTES = 5
V1_HEADER_BYTES = _V1_HEADER.size
# The smallest version-2 file: magic, version, id, two one-byte sizes, two bytes, no payload, CRC.
MIN_FILE_BYTES = len(MAGIC) + 1 + STORED_MODEL_ID_BYTES[2] + 1 + 1 + 1 + 1 + _CRC.size

DEFAULT_MAX_PIXELS = 1 << 28
MAX_CHANNELS = 4
MAX_BIT_DEPTH = 16
MAX_PATCH_SIZE = 4096
MAX_QUANT_BITS = 16
MAX_CLIP_STD = 1e30  # anything that a float32 field can hold with room to spare
MAX_PAYLOAD_BYTES = (1 << 32) - 1
# Fields that version 1 stores and version 2 leaves to the model.
MODEL_FIELDS = ("patch_size", "quant_bits", "clip_std", "num_patches")

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMAT_VERSION",
    "MAGIC",
    "MODEL_ID_BYTES",
    "READABLE_VERSIONS",
    "Header",
    "container_bytes",
    "model_id_of",
    "pack",
    "patch_grid",
    "unpack",
    "write_atomic",
]


def patch_grid(height: int, width: int, patch_size: int) -> tuple[int, int]:
    """Patch rows and columns covering an image; edge patches are padded, hence the ceiling."""
    return -(-height // patch_size), -(-width // patch_size)


@dataclass(frozen=True)
class Header:
    """Everything a decoder needs besides the model and the payload.

    The fields after ``quality_index`` are stored by version 1 only; in a version-2 header they
    are ``None`` (the model holds them) and the model id is kept as the 8 bytes the file stores.
    """

    model_id: bytes
    height: int
    width: int
    channels: int
    bit_depth: int
    quality_index: int
    patch_size: int | None = None
    quant_bits: int | None = None
    clip_std: float | None = None
    num_patches: int | None = None
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        # Stored as f32 / as an id prefix: normalise now so that a header compares equal after a round trip.
        if self.clip_std is not None:
            clip = float(self.clip_std)
            if math.isfinite(clip) and abs(clip) <= MAX_CLIP_STD:
                object.__setattr__(self, "clip_std", float(np.float32(clip)))
        stored = STORED_MODEL_ID_BYTES.get(self.version)
        if stored is not None and isinstance(self.model_id, (bytes, bytearray)) and len(self.model_id) > stored:
            object.__setattr__(self, "model_id", bytes(self.model_id[:stored]))

    @property
    def num_pixels(self) -> int:
        return self.height * self.width

    def matches_model(self, model_id: bytes) -> bool:
        """Whether the file was made with the model of this (full, 16-byte) id."""
        return bytes(model_id)[: len(self.model_id)] == bytes(self.model_id)

    def validate(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        """Raise ``BitstreamError`` naming the first field that is out of range or inconsistent."""
        if self.version not in READABLE_VERSIONS:
            raise BitstreamError(
                f"unsupported format version {self.version} (this build reads {_versions()})"
            )
        stored = STORED_MODEL_ID_BYTES[self.version]
        if not isinstance(self.model_id, (bytes, bytearray)) or len(self.model_id) != stored:
            raise BitstreamError(f"model id must be {stored} bytes in format version {self.version}")
        if not (1 <= self.height < 1 << 32 and 1 <= self.width < 1 << 32):
            raise BitstreamError(f"invalid image size {self.height}x{self.width}")
        if self.num_pixels > max_pixels:
            raise BitstreamError(
                f"image of {self.height}x{self.width} pixels exceeds the limit of {max_pixels} pixels"
            )
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise BitstreamError(f"invalid channel count {self.channels}")
        if not 1 <= self.bit_depth <= MAX_BIT_DEPTH:
            raise BitstreamError(f"invalid source bit depth {self.bit_depth}")
        if not 0 <= self.quality_index <= 255:
            raise BitstreamError(f"invalid quality index {self.quality_index}")
        if self.version >= 2:
            given = [f for f in MODEL_FIELDS if getattr(self, f) is not None]
            if given:
                raise BitstreamError(f"format version {self.version} takes {', '.join(given)} from the model")
            return
        if self.patch_size is None or not 1 <= self.patch_size <= MAX_PATCH_SIZE:
            raise BitstreamError(f"invalid patch size {self.patch_size}")
        if self.quant_bits is None or not 1 <= self.quant_bits <= MAX_QUANT_BITS:
            raise BitstreamError(f"invalid quantisation bit count {self.quant_bits}")
        if self.clip_std is None or not (math.isfinite(self.clip_std) and 0 < self.clip_std <= MAX_CLIP_STD):
            raise BitstreamError(f"invalid quantisation clip {self.clip_std}")
        rows, columns = patch_grid(self.height, self.width, self.patch_size)
        if self.num_patches != rows * columns:
            raise BitstreamError(
                f"patch count {self.num_patches} does not match a {self.height}x{self.width} image "
                f"in {self.patch_size}-pixel patches ({rows * columns})"
            )


def _versions() -> str:
    return " and ".join(map(str, READABLE_VERSIONS))


def model_id_of(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """A 16-byte id of a network: BLAKE2b over every tensor's name, dtype, shape and bytes.

    Names are visited in sorted order so the id does not depend on dict order; any change
    to a weight, shape or dtype changes the id.
    """
    digest = hashlib.blake2b(digest_size=MODEL_ID_BYTES)
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.digest()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, offset: int, name: str) -> tuple[int, int]:
    """The value at ``offset`` and the offset after it; refuses overlong and unterminated varints."""
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if offset + i >= len(data):
            raise BitstreamError(f"corrupt file: the {name} field runs past the header")
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise BitstreamError(f"corrupt file: the {name} field is not minimally encoded")
            return value, offset + i + 1
    raise BitstreamError(f"corrupt file: the {name} field is longer than {_MAX_VARINT_BYTES} bytes")


def _head(header: Header, payload_length: int) -> bytes:
    if header.version == 1:
        return _V1_HEADER.pack(
            MAGIC, 1, bytes(header.model_id), header.height, header.width, header.channels,
            header.bit_depth, header.patch_size, header.quality_index, header.quant_bits,
            header.clip_std, header.num_patches, payload_length,
        )
    return b"".join([
        MAGIC, bytes([header.version]), bytes(header.model_id), _varint(header.height), _varint(header.width),
        bytes([(header.channels - 1) << 4 | (header.bit_depth - 1), header.quality_index]),
    ])


def container_bytes(header: Header) -> int:
    """Bytes a file with ``header`` spends besides its payload (header and checksum), for rate reporting."""
    return len(_head(header, 0)) + _CRC.size


def pack(header: Header, payload: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The complete file for ``header`` and ``payload`` (the header is validated first)."""
    header.validate(max_pixels)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise BitstreamError(f"payload of {len(payload)} bytes is too large for the format")
    body = _head(header, len(payload)) + bytes(payload)
    return body + _CRC.pack(zlib.crc32(body))


def unpack(
    data: bytes, expected_model_id: bytes | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Header, bytes]:
    """Parse and verify a file made by :func:`pack`; returns the header and the payload.

    Checks, in order: magic, version, length, checksum, field ranges and consistency, and finally
    (if ``expected_model_id``, the model's 16-byte id, is given) that the file was made with that
    model.
    """
    data = bytes(data)
    if data[: len(MAGIC)] != MAGIC[: min(len(data), len(MAGIC))]:
        raise BitstreamError("not a metasparse compressed file (bad magic bytes)")
    if len(data) <= len(MAGIC):
        raise BitstreamError(f"truncated file: {len(data)} bytes, shorter than the {MIN_FILE_BYTES}-byte minimum")
    version = data[len(MAGIC)]
    if version not in READABLE_VERSIONS:
        raise BitstreamError(f"unsupported format version {version} (this build reads {_versions()})")
    header, payload = (_unpack_v1 if version == 1 else _unpack_v2)(data)
    header.validate(max_pixels)
    if expected_model_id is not None and not header.matches_model(expected_model_id):
        raise BitstreamError(
            f"file was made with a different model (id {header.model_id.hex()}) than the loaded one "
            f"(id {bytes(expected_model_id)[:len(header.model_id)].hex()}); use --model with the model it was made with"
        )
    return header, payload


def _check_crc(data: bytes, body_end: int) -> None:
    (stored_crc,) = _CRC.unpack_from(data, body_end)
    if zlib.crc32(data[:body_end]) != stored_crc:
        raise BitstreamError("checksum mismatch: the file is corrupt or truncated")


def _unpack_v2(data: bytes) -> tuple[Header, bytes]:
    if len(data) < MIN_FILE_BYTES:
        raise BitstreamError(f"truncated file: {len(data)} bytes, shorter than the {MIN_FILE_BYTES}-byte minimum")
    body_end = len(data) - _CRC.size
    # The checksum comes first: a corrupt file gets one clear message, not whichever field broke.
    _check_crc(data, body_end)
    body = data[:body_end]
    offset = len(MAGIC) + 1
    model_id = body[offset:offset + STORED_MODEL_ID_BYTES[2]]
    offset += len(model_id)
    height, offset = _read_varint(body, offset, "height")
    width, offset = _read_varint(body, offset, "width")
    if offset + 2 > len(body):
        raise BitstreamError("truncated file: the header ends before the quality index")
    packed, quality_index = body[offset], body[offset + 1]
    if packed >> 6:
        raise BitstreamError(f"corrupt file: reserved bits set in the channel byte ({packed:#04x})")
    header = Header(model_id=model_id, height=height, width=width, channels=(packed >> 4) + 1,
                    bit_depth=(packed & 0x0F) + 1, quality_index=quality_index, version=2)
    return header, body[offset + 2:]


def _unpack_v1(data: bytes) -> tuple[Header, bytes]:
    overhead = V1_HEADER_BYTES + _CRC.size
    if len(data) < overhead:
        raise BitstreamError(f"truncated file: {len(data)} bytes, shorter than the {overhead}-byte minimum")
    (_magic, version, model_id, height, width, channels, bit_depth, patch_size, quality_index, quant_bits,
     clip_std, num_patches, payload_length) = _V1_HEADER.unpack_from(data)
    present = len(data) - overhead
    if payload_length > present:
        raise BitstreamError(
            f"truncated file: the header announces {payload_length} payload bytes, only {present} are present"
        )
    if payload_length < present:
        raise BitstreamError(
            f"corrupt file: {present - payload_length} unexpected bytes after the announced payload"
        )
    body_end = V1_HEADER_BYTES + payload_length
    _check_crc(data, body_end)
    header = Header(model_id=model_id, height=height, width=width, channels=channels, bit_depth=bit_depth,
                    quality_index=quality_index, patch_size=patch_size, quant_bits=quant_bits,
                    clip_std=clip_std, num_patches=num_patches, version=version)
    return header, data[V1_HEADER_BYTES:body_end]
