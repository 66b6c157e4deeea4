"""Mutated files: decoding gives a clean image or a one-line error, never another exception, a hang
or a huge allocation.

Valid files of the bundled model (format versions 1 and 2, colour and grey, several sizes and
qualities) get bit flips, truncations, inserted and deleted bytes, changed header bytes and
corrupt payloads, the last two with the checksum recomputed so that the field checks and the
entropy decoder are reached. Seeded (``METASPARSE_FUZZ_SEED``, 12 by default); the number of cases
is ``METASPARSE_FUZZ_CASES`` (300 by default), ``METASPARSE_FUZZ_CLI_CASES`` through the command line
(24); the figures of a full run are in docs/codec.md.
"""

from __future__ import annotations

import dataclasses
import os
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from metasparse.cli import main
from metasparse.codec.format.bitstream import pack, unpack
from metasparse.codec.zoo import load_codec
from metasparse.errors import MetasparseError

CASES = int(os.environ.get("METASPARSE_FUZZ_CASES", "300"))
SEED = int(os.environ.get("METASPARSE_FUZZ_SEED", "12"))
CLI_CASES = int(os.environ.get("METASPARSE_FUZZ_CLI_CASES", "24"))
DATA = Path(__file__).parent / "data"
MAX_PIXELS = 1 << 20
# What any one decode may take: far above a real one here (tens of ms, a few MB of numpy arrays).
MAX_SECONDS = 10.0
MAX_NUMPY_BYTES = 64 << 20
KINDS = ("bit flips", "truncation", "inserted bytes", "deleted bytes", "header byte, checksum recomputed",
         "header field, checksum recomputed", "payload corrupted, checksum recomputed")


@pytest.fixture(scope="module")
def bundled():
    return load_codec("default")


@pytest.fixture(scope="module")
def seeds(bundled) -> list[bytes]:
    files = [(DATA / name).read_bytes() for name in sorted(os.listdir(DATA)) if name.endswith(".mspz")]
    y, x = np.mgrid[0:33, 0:40]
    image = np.stack([128 + 90 * np.sin(x / 5 + c) * np.cos(y / 7) for c in range(3)], -1).astype(np.uint8)
    files += [bundled.compress(image, quality).data for quality in (1, bundled.num_qualities)]
    files.append(bundled.compress(image[:1, :1], 2).data)
    return files


def _with_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def mutate(data: bytes, kind: int, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    body_end = len(data) - 4
    header, payload = unpack(data)
    head_size = body_end - len(payload)
    if kind == 0:
        for _ in range(rng.integers(1, 4)):
            out[rng.integers(len(out))] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        out = out[: rng.integers(0, len(out))]
    elif kind == 2:
        at = int(rng.integers(0, len(out) + 1))
        out[at:at] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
    elif kind == 3:
        at = int(rng.integers(0, len(out)))
        del out[at:at + int(rng.integers(1, 5))]
    elif kind == 4:  # any header byte, to any value: the field checks, not the checksum, must catch it
        body = bytearray(data[:body_end])
        value = int(rng.integers(256))
        first = 5 + len(header.model_id) if rng.random() < 0.2 else 5  # at times only the fields after the id
        body[rng.integers(first, head_size)] = value
        out = bytearray(_with_crc(bytes(body)))
    elif kind == 5:  # a field set to another value the container can hold (sizes up to 2^20 a side)
        field, value = [
            ("height", int(rng.choice([1, 2, 31, 33, 1000, 1 << 16, 1 << 20]))),
            ("width", int(rng.choice([1, 2, 31, 33, 1000, 1 << 16, 1 << 20]))),
            ("channels", int(rng.integers(1, 5))), ("quality_index", int(rng.integers(0, 8))),
            ("quant_bits", int(rng.integers(1, 17))),
            ("patch_size", int(rng.choice([1, 8, 16, 31, 64, 65535]))),
            ("clip_std", float(rng.choice([0.5, 3.0, 6.0, 100.0]))),
            ("version", 1 if header.version == 2 else 2),
        ][int(rng.integers(8))]
        changed = dataclasses.replace(header, **{field: value})
        if field == "version" and value == 1:
            changed = dataclasses.replace(changed, model_id=bytes(changed.model_id) + bytes(8))
        try:
            out = bytearray(pack(changed, payload, max_pixels=None))
        except MetasparseError:
            return data[:5]  # not packable: the decoder sees a truncated file instead
    else:  # the entropy decoder's own robustness: a payload that passes the checksum
        body = bytearray(payload) or bytearray(b"\0")
        choice = rng.integers(3)
        if choice == 0:
            body[rng.integers(len(body))] ^= int(rng.integers(1, 256))
        elif choice == 1:
            body = body[: rng.integers(0, len(body))]
        else:
            body += rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        out = bytearray(pack(header, bytes(body)))
    return bytes(out)


def test_mutated_files_decode_cleanly_or_fail_with_a_metasparse_error(bundled, seeds) -> None:
    rng = np.random.default_rng(SEED)
    counts = {"decoded": 0, "refused": 0}
    slowest, largest = 0.0, 0
    started = time.perf_counter()
    tracemalloc.start()
    try:
        for case in range(CASES):
            kind = case % len(KINDS)
            data = mutate(seeds[case % len(seeds)], kind, rng)
            tracemalloc.reset_peak()
            t0 = time.perf_counter()
            try:
                image = bundled.decompress(data, max_pixels=MAX_PIXELS)
            except MetasparseError as error:
                assert "\n" not in str(error), f"case {case} ({KINDS[kind]}): a message of several lines"
                counts["refused"] += 1
            except BaseException as error:  # noqa: BLE001 - anything else is the failure this test looks for
                pytest.fail(f"case {case} ({KINDS[kind]}): {type(error).__name__}: {error}; "
                            f"file {data.hex()}")
            else:
                header, _ = unpack(data, max_pixels=MAX_PIXELS)
                assert image.dtype == np.uint8
                assert image.shape == (header.height, header.width, header.channels)
                counts["decoded"] += 1
            slowest = max(slowest, time.perf_counter() - t0)
            largest = max(largest, tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
    print(f"{CASES} mutated files: {counts['decoded']} decoded, "
          f"{counts['refused']} refused with a one-line error, "
          f"0 other; slowest {slowest:.3f} s, largest numpy/Python peak {largest / 2**20:.1f} MiB, "
          f"{time.perf_counter() - started:.1f} s in all")
    assert slowest < MAX_SECONDS and largest < MAX_NUMPY_BYTES
    assert counts["refused"] > CASES // 2 and counts["decoded"] > 0


def test_mutated_files_on_the_command_line_are_one_line_errors_and_leave_nothing(bundled, seeds, tmp_path,
                                                                                  capsys) -> None:
    rng = np.random.default_rng(SEED + 1)
    counts = {0: 0, 1: 0}
    for case in range(CLI_CASES):
        kind = case % len(KINDS)
        source = tmp_path / f"case{case}.mspz"
        source.write_bytes(mutate(seeds[case % len(seeds)], kind, rng))
        target = tmp_path / f"case{case}.png"
        try:
            main(["decompress", str(source), "-o", str(target), "--max-pixels", str(MAX_PIXELS)])
            status = 0
        except SystemExit as e:
            status = e.code
        err = capsys.readouterr().err.strip()
        assert status in (0, 1), f"case {case} ({KINDS[kind]}): exit {status}: {err}"
        counts[status] += 1
        if status == 1:
            assert len(err.splitlines()) == 1 and err.startswith("error: "), err
            assert not target.exists()
        else:
            assert target.is_file()
        source.unlink()
        target.unlink(missing_ok=True)
    print(f"{CLI_CASES} mutated files on the command line: {counts[0]} decoded (exit 0), "
          f"{counts[1]} one-line "
          f"errors (exit 1), 0 other")
    assert not list(tmp_path.iterdir())
