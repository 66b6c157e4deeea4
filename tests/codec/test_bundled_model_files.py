"""Files made with the bundled model decode to the very pixels they decoded to when they were made.

The files and the hashes of their pixels are committed (tests/codec/data), so any change that alters
what the bundled model decodes (the network, the quantiser, the entropy coder, patch assembly,
rounding) fails here, even when every round trip made on the fly still agrees with itself.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metasparse.codec.bitstream import unpack
from metasparse.codec.cli import load_codec

DATA = Path(__file__).parent / "data"
EXPECTED = json.loads((DATA / "bundled-model-files.json").read_text())["files"]


@pytest.fixture(scope="module")
def bundled():
    return load_codec("default")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_file_decodes_to_its_recorded_pixels(bundled, name) -> None:
    data = (DATA / name).read_bytes()
    header, _ = unpack(data, expected_model_id=bundled.model_id)
    # One thread, as when the hashes were recorded (tests/codec/conftest.py sets it for every test);
    # 1 and 2 threads, and AVX2 or AVX-512 kernels, gave the same pixels when they were recorded.
    assert torch.get_num_threads() == 1
    image = bundled.decompress(data)
    assert image.dtype == np.uint8 and list(image.shape) == EXPECTED[name]["shape"]
    assert (header.height, header.width, header.channels) == tuple(EXPECTED[name]["shape"])
    assert hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() == EXPECTED[name]["sha256"], (
        f"{name} no longer decodes to the pixels recorded when it was made: decoding has changed"
    )
