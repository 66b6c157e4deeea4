"""The compressed-file container: a small header, the entropy-coded payload, and a CRC32.

Version 2 (written) keeps every field of version 1 but the ones that follow from others; integers
little-endian, sizes as unsigned LEB128 varints (one byte up to 127, at most five)::

    size  field
       4  magic b"MSPZ"
       1  format version (u8) = 2
       8  model id: the first 8 bytes of the model's 16-byte id
     1-5  image height (varint)
     1-5  image width (varint)
       1  (channels - 1) << 4 | (source bit depth - 1); the top two bits are zero
       1  quality index (u8: which modulation budget)
     1-3  patch size (varint); the patch grid is the image size over it, rounded up
       1  quantisation bits - 1 (the top four bits are zero)
       2  quantisation clip in std units (f16)
       n  payload: everything up to the checksum
       4  CRC32 of every byte before it

That is 25 bytes besides the payload for an image up to 127 pixels a side (a 32x32 CIFAR image:
0.20 bpp), where version 1 spent 51 (0.40 bpp) on fixed-width fields, a full model id, the patch
count (which the image size and patch size give) and the payload length (which the file size gives).

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from metasparse.data.tiling import patch_grid
from metasparse.errors import BitstreamError

MAGIC = b"MSPZ"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MODEL_ID_BYTES = 16
# A model id prefix of 64 bits: two models mistaken for each other once in 1.8e19.
STORED_MODEL_ID_BYTES = {1: MODEL_ID_BYTES, 2: 8}

_V1_HEADER = struct.Struct("<4sB16sIIBBHBBfII")
_CRC = struct.Struct("<I")
_CLIP_F16 = struct.Struct("<e")
_MAX_VARINT_BYTES = 5
V1_HEADER_BYTES = _V1_HEADER.size
# The smallest version-2 file: magic, version, id, two one-byte sizes, channel and quality bytes,
# a one-byte patch size, bits, clip, no payload, CRC.
MIN_FILE_BYTES = len(MAGIC) + 1 + STORED_MODEL_ID_BYTES[2] + 1 + 1 + 2 + 1 + 1 + _CLIP_F16.size + _CRC.size

DEFAULT_MAX_PIXELS = 1 << 28
MAX_CHANNELS = 4
MAX_BIT_DEPTH = 16
MAX_PATCH_SIZE = 65535  # version 1's u16 field; a signal's patch spans its whole grid
MAX_QUANT_BITS = 16
# The clip a version's field can hold: float32 with room to spare, the largest finite float16.
MAX_CLIP_STD = {1: 1e30, 2: 65504.0}

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMAT_VERSION",
    "MAGIC",
    "MODEL_ID_BYTES",
    "READABLE_VERSIONS",
    "Header",
    "clip_fits",
    "container_bytes",
    "model_id_from_parts",
    "pack",
    "stored_clip",
    "unpack",
]


def _rounded_clip(clip_std: float, version: int) -> float | None:
    """``clip_std`` rounded to the field of ``version`` (float32 in version 1, float16 in 2), or
    ``None`` where the field cannot hold it as a positive finite number (for float16: beyond 65504
    or below 6e-8)."""
    clip = float(clip_std)
    if not (math.isfinite(clip) and 0 < clip <= MAX_CLIP_STD.get(version, 0.0)):
        return None
    stored = float(np.float16(clip) if version >= 2 else np.float32(clip))
    return stored if stored > 0 else None


def stored_clip(clip_std: float, version: int = FORMAT_VERSION) -> float:
    """``clip_std`` as a file of ``version`` stores it; a value the field cannot hold comes back
    unchanged, for :meth:`Header.validate` to name."""
    stored = _rounded_clip(clip_std, version)
    return float(clip_std) if stored is None else stored


def clip_fits(clip_std: float, version: int = FORMAT_VERSION) -> bool:
    """Whether a file of ``version`` can store ``clip_std`` as a positive finite number."""
    return _rounded_clip(clip_std, version) is not None


@dataclass(frozen=True)
class Header:
    """Everything a decoder needs besides the model and the payload.

    The clip is kept as the file stores it and the model id as its stored prefix (8 bytes in
    version 2), so that a header compares equal after a round trip.
    """

    model_id: bytes
    height: int
    width: int
    channels: int
    bit_depth: int
    patch_size: int
    quality_index: int
    quant_bits: int
    clip_std: float
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "clip_std", stored_clip(self.clip_std, self.version))
        stored = STORED_MODEL_ID_BYTES.get(self.version)
        if stored is not None and isinstance(self.model_id, (bytes, bytearray)) and len(self.model_id) > stored:
            object.__setattr__(self, "model_id", bytes(self.model_id[:stored]))

    @property
    def num_pixels(self) -> int:
        return self.height * self.width

    @property
    def num_patches(self) -> int:
        (rows, columns), _ = patch_grid(self.height, self.width, self.patch_size)
        return rows * columns

    def matches_model(self, model_id: bytes) -> bool:
        """Whether the file was made with the model of this (full, 16-byte) id."""
        return bytes(model_id)[: len(self.model_id)] == bytes(self.model_id)

    def validate(self, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        """Raise ``BitstreamError`` naming the first field that is out of range or inconsistent
        (``max_pixels=None``: no limit on the image size, for reading a header without decoding)."""
        if self.version not in READABLE_VERSIONS:
            raise BitstreamError(
                f"unsupported format version {self.version} (this build reads {_versions()})"
            )
        stored = STORED_MODEL_ID_BYTES[self.version]
        if not isinstance(self.model_id, (bytes, bytearray)) or len(self.model_id) != stored:
            raise BitstreamError(f"model id must be {stored} bytes in format version {self.version}")
        if not (1 <= self.height < 1 << 32 and 1 <= self.width < 1 << 32):
            raise BitstreamError(f"invalid image size {self.height}x{self.width}")
        if max_pixels is not None and self.num_pixels > max_pixels:
            raise BitstreamError(
                f"image of {self.height}x{self.width} pixels exceeds the limit of {max_pixels} pixels"
            )
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise BitstreamError(f"invalid channel count {self.channels}")
        if not 1 <= self.bit_depth <= MAX_BIT_DEPTH:
            raise BitstreamError(f"invalid source bit depth {self.bit_depth}")
        if not 1 <= self.patch_size <= MAX_PATCH_SIZE:
            raise BitstreamError(f"invalid patch size {self.patch_size}")
        if not 0 <= self.quality_index <= 255:
            raise BitstreamError(f"invalid quality index {self.quality_index}")
        if not 1 <= self.quant_bits <= MAX_QUANT_BITS:
            raise BitstreamError(f"invalid quantisation bit count {self.quant_bits}")
        if not clip_fits(self.clip_std, self.version):
            kind = "float16" if self.version >= 2 else "float32"
            raise BitstreamError(f"invalid quantisation clip {self.clip_std} (format version {self.version} "
                                 f"stores a positive {kind} up to {MAX_CLIP_STD[self.version]:g})")
        # The decoder renders whole patches: a thin image in large patches must not decode to far
        # more padded pixels than the limit allows.
        padded = self.num_patches * self.patch_size**2
        if padded > 2 * max(max_pixels or 0, self.num_pixels):
            raise BitstreamError(
                f"image of {self.height}x{self.width} pixels in {self.patch_size}-pixel patches decodes "
                f"{padded:,} padded pixels, over the limit"
            )


def _versions() -> str:
    return " and ".join(map(str, READABLE_VERSIONS))


def model_id_from_parts(parts: Mapping[str, tuple[str, Sequence[int], bytes]]) -> bytes:
    """A 16-byte id of a network: BLAKE2b over every array's name, dtype name, shape and bytes.

    ``parts`` maps each name to ``(dtype name, shape, raw bytes in row-major order)``; a network's
    tensors give them through :func:`metasparse.codec.model.model_id_of` (dtype names such as
    ``"torch.float32"``). Names are visited in sorted order so the id does not depend on dict order;
    any change to a weight, shape or dtype changes the id.
    """
    digest = hashlib.blake2b(digest_size=MODEL_ID_BYTES)
    for name in sorted(parts):
        dtype, shape, data = parts[name]
        digest.update(f"{name}\0{dtype}\0{tuple(int(size) for size in shape)}\0".encode())
        digest.update(bytes(data))
    return digest.digest()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class _Reader:
    """Fields of a version-2 header, in order; every read names the field that runs short."""

    def __init__(self, body: bytes, offset: int) -> None:
        self.body, self.offset = body, offset

    def take(self, size: int, name: str) -> bytes:
        if self.offset + size > len(self.body):
            raise BitstreamError(f"truncated file: the header ends before the {name}")
        chunk = self.body[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def varint(self, name: str) -> int:
        value = 0
        for i in range(_MAX_VARINT_BYTES):
            (byte,) = self.take(1, name)
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if byte == 0 and i > 0:
                    raise BitstreamError(f"corrupt file: the {name} is not minimally encoded")
                return value
        raise BitstreamError(f"corrupt file: the {name} is longer than {_MAX_VARINT_BYTES} bytes")


def _head(header: Header) -> bytes:
    """Version 2's header (version 1's is written by :func:`_head_v1`, which needs the payload length)."""
    return b"".join([
        MAGIC, bytes([header.version]), bytes(header.model_id), _varint(header.height), _varint(header.width),
        bytes([(header.channels - 1) << 4 | (header.bit_depth - 1), header.quality_index]),
        _varint(header.patch_size), bytes([header.quant_bits - 1]), _CLIP_F16.pack(header.clip_std),
    ])


def _head_v1(header: Header, payload_length: int) -> bytes:
    return _V1_HEADER.pack(
        MAGIC, 1, bytes(header.model_id), header.height, header.width, header.channels, header.bit_depth,
        header.patch_size, header.quality_index, header.quant_bits, header.clip_std, header.num_patches,
        payload_length,
    )


def container_bytes(header: Header) -> int:
    """Bytes a file with ``header`` spends besides its payload (header and checksum), for rate reporting."""
    head = _head_v1(header, 0) if header.version == 1 else _head(header)
    return len(head) + _CRC.size


def pack(header: Header, payload: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> bytes:
    """The complete file for ``header`` and ``payload`` (the header is validated first)."""
    header.validate(max_pixels)
    if header.version == 1:
        if len(payload) >= 1 << 32:
            raise BitstreamError(f"payload of {len(payload)} bytes is too large for format version 1")
        if header.num_patches >= 1 << 32:
            raise BitstreamError(f"{header.num_patches} patches are too many for format version 1")
        head = _head_v1(header, len(payload))
    else:
        head = _head(header)
    body = head + bytes(payload)
    return body + _CRC.pack(zlib.crc32(body))


def unpack(
    data: bytes, expected_model_id: bytes | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS
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
    read = _Reader(data[:body_end], len(MAGIC) + 1)
    model_id = read.take(STORED_MODEL_ID_BYTES[2], "model id")
    height, width = read.varint("image height"), read.varint("image width")
    (packed,) = read.take(1, "channel count")
    if packed >> 6:
        raise BitstreamError(f"corrupt file: reserved bits set in the channel byte ({packed:#04x})")
    (quality_index,) = read.take(1, "quality index")
    patch_size = read.varint("patch size")
    (bits,) = read.take(1, "quantisation bits")
    if bits >> 4:
        raise BitstreamError(f"corrupt file: reserved bits set in the quantisation byte ({bits:#04x})")
    (clip_std,) = _CLIP_F16.unpack(read.take(_CLIP_F16.size, "quantisation clip"))
    header = Header(model_id=model_id, height=height, width=width, channels=(packed >> 4) + 1,
                    bit_depth=(packed & 0x0F) + 1, patch_size=patch_size, quality_index=quality_index,
                    quant_bits=bits + 1, clip_std=clip_std, version=2)
    return header, data[read.offset:body_end]


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
                    patch_size=patch_size, quality_index=quality_index, quant_bits=quant_bits,
                    clip_std=clip_std, version=version)
    # The stored count must be the one the size gives (where the fields allow computing it at all;
    # validate() names the field otherwise).
    computable = height >= 1 and width >= 1 and 1 <= patch_size <= MAX_PATCH_SIZE
    if computable and num_patches != header.num_patches:
        raise BitstreamError(
            f"patch count {num_patches} does not match a {height}x{width} image "
            f"in {patch_size}-pixel patches ({header.num_patches})"
        )
    return header, data[V1_HEADER_BYTES:body_end]
