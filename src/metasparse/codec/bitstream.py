"""The compressed-file container: a fixed header, the entropy-coded payload, and a CRC32.

Layout (all integers little-endian)::

    offset size  field
         0    4  magic b"MSPZ"
         4    1  format version (u8)
         5   16  model id (hash of the base network the file was made with)
        21    4  image height (u32)
        25    4  image width (u32)
        29    1  channels (u8)
        30    1  source bit depth (u8)
        31    2  patch size (u16)
        33    1  quality index (u8: which modulation budget)
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
FORMAT_VERSION = 1
MODEL_ID_BYTES = 16

_HEADER = struct.Struct("<4sB16sIIBBHBBfII")
_CRC = struct.Struct("<I")
HEADER_BYTES = _HEADER.size
# Bytes a file spends besides the payload (header + checksum), for rate reporting.
CONTAINER_OVERHEAD_BYTES = HEADER_BYTES + _CRC.size

DEFAULT_MAX_PIXELS = 1 << 28
MAX_CHANNELS = 4
MAX_BIT_DEPTH = 16
MAX_PATCH_SIZE = 4096
MAX_QUANT_BITS = 16
MAX_CLIP_STD = 1e30  # anything that a float32 field can hold with room to spare
MAX_PAYLOAD_BYTES = (1 << 32) - 1

__all__ = [
    "CONTAINER_OVERHEAD_BYTES",
    "DEFAULT_MAX_PIXELS",
    "FORMAT_VERSION",
    "HEADER_BYTES",
    "MAGIC",
    "MODEL_ID_BYTES",
    "Header",
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
    """Everything a decoder needs besides the model and the payload."""

    model_id: bytes
    height: int
    width: int
    channels: int
    bit_depth: int
    patch_size: int
    quality_index: int
    quant_bits: int
    clip_std: float
    num_patches: int
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        # Stored as f32 in the file: round now so that a header compares equal after a round trip.
        clip = float(self.clip_std)
        if math.isfinite(clip) and abs(clip) <= MAX_CLIP_STD:
            object.__setattr__(self, "clip_std", float(np.float32(clip)))

    @property
    def num_pixels(self) -> int:
        return self.height * self.width

    def validate(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        """Raise ``BitstreamError`` naming the first field that is out of range or inconsistent."""
        if not isinstance(self.model_id, (bytes, bytearray)) or len(self.model_id) != MODEL_ID_BYTES:
            raise BitstreamError(f"model id must be {MODEL_ID_BYTES} bytes")
        if self.version != FORMAT_VERSION:
            raise BitstreamError(
                f"unsupported format version {self.version} (this build reads {FORMAT_VERSION})"
            )
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
        if not 1 <= self.patch_size <= MAX_PATCH_SIZE:
            raise BitstreamError(f"invalid patch size {self.patch_size}")
        if not 0 <= self.quality_index <= 255:
            raise BitstreamError(f"invalid quality index {self.quality_index}")
        if not 1 <= self.quant_bits <= MAX_QUANT_BITS:
            raise BitstreamError(f"invalid quantisation bit count {self.quant_bits}")
        if not (math.isfinite(self.clip_std) and 0 < self.clip_std <= MAX_CLIP_STD):
            raise BitstreamError(f"invalid quantisation clip {self.clip_std}")
        rows, columns = patch_grid(self.height, self.width, self.patch_size)
        if self.num_patches != rows * columns:
            raise BitstreamError(
                f"patch count {self.num_patches} does not match a {self.height}x{self.width} image "
                f"in {self.patch_size}-pixel patches ({rows * columns})"
            )


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


def pack(header: Header, payload: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The complete file for ``header`` and ``payload`` (the header is validated first)."""
    header.validate(max_pixels)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise BitstreamError(f"payload of {len(payload)} bytes is too large for the format")
    head = _HEADER.pack(
        MAGIC,
        header.version,
        bytes(header.model_id),
        header.height,
        header.width,
        header.channels,
        header.bit_depth,
        header.patch_size,
        header.quality_index,
        header.quant_bits,
        header.clip_std,
        header.num_patches,
        len(payload),
    )
    body = head + bytes(payload)
    return body + _CRC.pack(zlib.crc32(body))


def unpack(
    data: bytes, expected_model_id: bytes | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Header, bytes]:
    """Parse and verify a file made by :func:`pack`; returns the header and the payload.

    Checks, in order: magic, length, version, payload length, CRC, field ranges and
    consistency, and finally (if ``expected_model_id`` is given) that the file was made
    with that model.
    """
    data = bytes(data)
    if data[: len(MAGIC)] != MAGIC[: min(len(data), len(MAGIC))]:
        raise BitstreamError("not a metasparse compressed file (bad magic bytes)")
    if len(data) < CONTAINER_OVERHEAD_BYTES:
        raise BitstreamError(
            f"truncated file: {len(data)} bytes, shorter than the {CONTAINER_OVERHEAD_BYTES}-byte minimum"
        )
    (
        _magic,
        version,
        model_id,
        height,
        width,
        channels,
        bit_depth,
        patch_size,
        quality_index,
        quant_bits,
        clip_std,
        num_patches,
        payload_length,
    ) = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise BitstreamError(f"unsupported format version {version} (this build reads {FORMAT_VERSION})")
    present = len(data) - CONTAINER_OVERHEAD_BYTES
    if payload_length > present:
        raise BitstreamError(
            f"truncated file: the header announces {payload_length} payload bytes, only {present} are present"
        )
    if payload_length < present:
        raise BitstreamError(
            f"corrupt file: {present - payload_length} unexpected bytes after the announced payload"
        )
    body_end = HEADER_BYTES + payload_length
    (stored_crc,) = _CRC.unpack_from(data, body_end)
    if zlib.crc32(data[:body_end]) != stored_crc:
        raise BitstreamError("checksum mismatch: file is corrupt")
    header = Header(
        model_id=model_id,
        height=height,
        width=width,
        channels=channels,
        bit_depth=bit_depth,
        patch_size=patch_size,
        quality_index=quality_index,
        quant_bits=quant_bits,
        clip_std=clip_std,
        num_patches=num_patches,
        version=version,
    )
    header.validate(max_pixels)
    if expected_model_id is not None and bytes(expected_model_id) != model_id:
        raise BitstreamError(
            f"file was made with a different model (id {model_id.hex()}) than the loaded one "
            f"(id {bytes(expected_model_id).hex()}); use --model with the model it was made with"
        )
    return header, data[HEADER_BYTES:body_end]
