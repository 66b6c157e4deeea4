"""Files made with the bundled models decode to the very pixels they decoded to when they were made.

The files and the hashes of their pixels are committed (tests/codec/data), so any change that alters
what a bundled model decodes (the network, the quantiser, the entropy coder, patch assembly, the
deblocking filter, rounding) fails here, even when every round trip made on the fly still agrees with
itself. A model that was once the default stays bundled, and its files still decode.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metasparse.codec.format.bitstream import unpack
from metasparse.codec.zoo import BUNDLED, bundled_name_for, load_codec

DATA = Path(__file__).parent / "data"
EXPECTED = json.loads((DATA / "bundled-model-files.json").read_text())["files"]


@pytest.fixture(scope="module")
def models():
    return {name: load_codec(name) for name in BUNDLED}


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
def test_committed_file_decodes_to_its_recorded_pixels(models, torch_threads, name, threads) -> None:
    torch_threads(threads)
    data = (DATA / name).read_bytes()
    codec = models[EXPECTED[name]["model"]]
    header, _ = unpack(data, expected_model_id=codec.model_id)
    image = codec.decompress(data)
    assert image.dtype == np.uint8 and list(image.shape) == EXPECTED[name]["shape"]
    assert (header.height, header.width, header.channels) == tuple(EXPECTED[name]["shape"])
    assert digest(image) == EXPECTED[name]["sha256"], (
        f"{name} no longer decodes to the pixels recorded when it was made: decoding has changed"
    )


def test_rendering_runs_each_op_on_one_thread_whatever_torch_was_given(models, torch_threads,
                                                                      monkeypatch) -> None:
    """A matmul split over threads can round differently from run to run, and then a file would not
    always decode to the same pixels; the chunks are rendered side by side instead."""
    torch_threads(2)
    bundled = models[EXPECTED["astronaut-48x64.mspz"]["model"]]
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


def test_every_bundled_model_has_committed_files_and_is_found_by_its_id(models) -> None:
    assert {entry["model"] for entry in EXPECTED.values()} == set(BUNDLED)
    for name, codec in models.items():
        assert bundled_name_for(codec.model_id) == name
    assert bundled_name_for(bytes(16)) is None
