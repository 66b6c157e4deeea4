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

from metasparse.codec.format.bitstream import unpack
from metasparse.codec.zoo import load_codec

DATA = Path(__file__).parent / "data"
EXPECTED = json.loads((DATA / "bundled-model-files.json").read_text())["files"]


@pytest.fixture(scope="module")
def bundled():
    return load_codec("default")


@pytest.fixture
def torch_threads():
    """Set torch's intra-op threads for one test (tests/codec/conftest.py runs every test on one)."""
    previous = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(previous)


def digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_file_decodes_to_its_recorded_pixels(bundled, torch_threads, name, threads) -> None:
    torch_threads(threads)
    data = (DATA / name).read_bytes()
    header, _ = unpack(data, expected_model_id=bundled.model_id)
    image = bundled.decompress(data)
    assert image.dtype == np.uint8 and list(image.shape) == EXPECTED[name]["shape"]
    assert (header.height, header.width, header.channels) == tuple(EXPECTED[name]["shape"])
    assert digest(image) == EXPECTED[name]["sha256"], (
        f"{name} no longer decodes to the pixels recorded when it was made: decoding has changed"
    )


def test_rendering_runs_each_op_on_one_thread_whatever_torch_was_given(bundled, torch_threads,
                                                                      monkeypatch) -> None:
    """A matmul split over threads can round differently from run to run, and then a file would not
    always decode to the same pixels; the chunks are rendered side by side instead."""
    torch_threads(2)
    problem_class = type(bundled.problem(bundled.levels[0].budget))
    predict, seen = problem_class.predict, []

    def recording_predict(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(problem_class, "predict", recording_predict)
    image = bundled.decompress((DATA / "astronaut-48x64.mspz").read_bytes())
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2
    assert digest(image) == EXPECTED["astronaut-48x64.mspz"]["sha256"]
