import json
import os
import stat
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import metasparse
from metasparse.config import DataConfig, RunConfig, TrainConfig
from metasparse.errors import ModelError
from metasparse.meta.engine import MetaConfig
from metasparse.modalities.loading import BatchSource
from metasparse.nn.siren import ModelConfig
from metasparse.training.model_file import MetaModel
from metasparse.training.trainer import Trainer
from metasparse.utils import tensorfile as ckpt

BUNDLED = Path(metasparse.__file__).parent / "pretrained" / "codec-default.safetensors"


def tiny_config() -> RunConfig:
    return RunConfig(
        name="tiny",
        model=ModelConfig(width=8, depth=2, w0=30),
        meta=MetaConfig(inner_steps=1, outer_lr=1e-3, batch_size=2),
        data=DataConfig(path="unused"),
        train=TrainConfig(steps=4, log_every=2, checkpoint_every=2, device="cpu"),
    )


def make_trainer(run_dir, signals, config=None):
    config = config or tiny_config()
    return Trainer(config, run_dir, source=BatchSource(config.data, "cpu", signals=signals), device="cpu")


def data_offset(path: Path) -> int:
    """Where a safetensors file's tensor bytes start (after its 8-byte length and JSON header)."""
    (header_length,) = struct.unpack("<Q", path.read_bytes()[:8])
    return 8 + header_length


def header_of(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["metasparse"])


def rewrite(path: Path, tensors: dict, info: dict) -> None:
    """Write a file as an older metasparse (or a hand edit) would: no checksum recomputed."""
    save_file(tensors, str(path), metadata={"metasparse": json.dumps(info)})


def test_a_file_round_trips_with_its_checksum(tmp_path):
    path = tmp_path / "m.safetensors"
    ckpt.save(path, {"a": {"w": torch.arange(6.0).reshape(2, 3)}, "rng": torch.arange(4, dtype=torch.uint8)},
              {"step": 3})
    flat, info = ckpt.load(path)
    assert info["checksum"].startswith("sha256:") and info["step"] == 3
    assert torch.equal(flat["a/w"], torch.arange(6.0).reshape(2, 3))


def test_saving_the_header_of_a_loaded_file_again_gives_a_fresh_checksum(tmp_path):
    ckpt.save(tmp_path / "a.safetensors", {"w": torch.ones(2)}, {"step": 1})
    flat, info = ckpt.load(tmp_path / "a.safetensors")
    ckpt.save(tmp_path / "b.safetensors", {"w": flat["w"] * 2}, info)  # the old checksum comes along
    assert torch.equal(ckpt.load(tmp_path / "b.safetensors")[0]["w"], torch.full((2,), 2.0))


def test_a_flipped_byte_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "m.safetensors"
    ckpt.save(path, {"w": torch.ones(16)}, {"step": 1})
    data = bytearray(path.read_bytes())
    data[data_offset(path) + 5] ^= 0x01  # still a finite float: only the checksum can tell
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"m\.safetensors is corrupt.*checksum"):
        ckpt.load(path)


def test_a_missing_tensor_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "m.safetensors"
    ckpt.save(path, {"w": torch.ones(4), "b": torch.zeros(2)}, {"step": 1})
    flat = load_file(str(path))
    del flat["b"]
    rewrite(path, flat, header_of(path))
    with pytest.raises(ModelError, match=r"m\.safetensors is corrupt"):
        ckpt.load(path)


def test_a_changed_header_value_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    ckpt.save(path, {"w": torch.ones(4)}, {"step": 1})
    info = header_of(path)
    info["step"] = 2
    rewrite(path, load_file(str(path)), info)
    with pytest.raises(ModelError, match="corrupt"):
        ckpt.load(path)


def test_files_written_before_the_checksum_still_load(tmp_path):
    path = tmp_path / "old.safetensors"
    rewrite(path, {"w": torch.ones(4)}, {"format": ckpt.FORMAT, "version": 1, "step": 1})
    flat, info = ckpt.load(path)
    assert "checksum" not in info and torch.equal(flat["w"], torch.ones(4))
    _, bundled = ckpt.load(BUNDLED)  # committed before checksums existed
    assert "checksum" not in bundled and bundled["kind"] == "image-codec"


def test_the_bundled_codec_model_still_loads():
    from metasparse.codec.model import load_codec_file

    assert load_codec_file(BUNDLED).levels


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_tensor_is_a_bad_file_naming_the_tensor(tmp_path, bad):
    values = torch.ones(4)
    values[2] = bad
    old = tmp_path / "old.safetensors"
    rewrite(old, {"meta/theta/w": values}, {"format": ckpt.FORMAT, "version": 1})
    with pytest.raises(ModelError, match=r"old\.safetensors: tensor 'meta/theta/w' holds NaN"):
        ckpt.load(old)
    new = tmp_path / "new.safetensors"
    ckpt.save(new, {"meta": {"theta": {"w": values}}}, {})
    with pytest.raises(ModelError, match="'meta/theta/w' holds NaN"):
        ckpt.load(new)


def test_model_files_get_the_permissions_of_other_outputs(tmp_path):
    previous = os.umask(0o022)
    try:
        ckpt.save(tmp_path / "m.safetensors", {"w": torch.ones(2)}, {})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "m.safetensors").stat().st_mode) == 0o644


def test_a_save_removes_the_temporaries_that_killed_saves_left(tmp_path):
    stale = tmp_path / ".model.safetensors.k1ll3d_x.tmp"
    live = tmp_path / ".checkpoint.safetensors.wr1t1ng0.tmp"  # another process's save in progress
    foreign = tmp_path / ".notes.txt.abcdefgh.tmp"  # not a model file: never ours to remove
    for path in (stale, live, foreign):
        path.write_bytes(b"partial")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(foreign, (old, old))
    ckpt.save(tmp_path / "round_00.safetensors", {"w": torch.ones(2)}, {})
    assert not stale.exists()
    assert live.exists() and foreign.exists()


def test_a_resumed_run_removes_the_temporaries_of_its_killed_save(tmp_path, tiny_signals):
    make_trainer(tmp_path, tiny_signals).run(max_steps=2)
    orphan = tmp_path / ".checkpoint.safetensors.abc_1234.tmp"
    orphan.write_bytes(b"half a checkpoint")
    assert make_trainer(tmp_path, tiny_signals).try_resume()
    assert not orphan.exists()


def checkpoint_with(run_dir: Path, signals, edit) -> Path:
    """A real checkpoint, edited by ``edit(flat, info)`` and saved again with a valid checksum."""
    trainer = make_trainer(run_dir, signals)
    trainer.run(max_steps=2)
    flat, info = ckpt.load(trainer.checkpoint_path)
    edit(flat, info)
    tensors = {k: v for k, v in flat.items()}
    info.pop("format"), info.pop("version")
    ckpt.save(trainer.checkpoint_path, tensors, info)
    return trainer.checkpoint_path


@pytest.mark.parametrize("step", [-1, 10**9, 2.5, "2", True, None])
def test_an_out_of_range_step_is_refused(tmp_path, tiny_signals, step):
    checkpoint_with(tmp_path, tiny_signals, lambda flat, info: info.update(step=step))
    with pytest.raises(ModelError, match="invalid step"):
        make_trainer(tmp_path, tiny_signals).try_resume()


def test_a_missing_tensor_in_an_old_checkpoint_is_a_model_error_not_a_key_error(tmp_path, tiny_signals):
    trainer = make_trainer(tmp_path, tiny_signals)
    trainer.run(max_steps=2)
    flat_saved, info = load_file(str(trainer.checkpoint_path)), header_of(trainer.checkpoint_path)
    info.pop("checksum")  # as written before checksums existed
    for missing in ("meta/theta/layers.1.weight", "rng/noise"):
        flat = {k: v for k, v in flat_saved.items() if k != missing}
        rewrite(trainer.checkpoint_path, flat, info)
        with pytest.raises(ModelError, match=missing):
            make_trainer(tmp_path, tiny_signals).try_resume()


def test_a_nan_loaded_from_a_checkpoint_is_a_bad_file_not_a_divergence(tmp_path, tiny_signals):
    def poison(flat, info):
        flat["meta/theta/layers.0.weight"][0, 0] = float("nan")

    path = checkpoint_with(tmp_path, tiny_signals, poison)
    with pytest.raises(ModelError, match=r"checkpoint\.safetensors: tensor 'meta/theta/layers\.0\.weight'"):
        make_trainer(tmp_path, tiny_signals).try_resume()
    assert path.exists()


def test_a_diverged_state_is_not_saved_over_the_last_checkpoint(tmp_path, tiny_signals):
    trainer = make_trainer(tmp_path, tiny_signals)
    trainer.run(max_steps=2)
    before = trainer.checkpoint_path.read_bytes()
    with torch.no_grad():
        trainer.learner.meta["theta"]["layers.0.weight"][0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="diverged"):
        trainer.save_checkpoint()
    assert trainer.checkpoint_path.read_bytes() == before


def test_a_model_file_missing_a_tensor_is_refused(tmp_path, tiny_signals):
    make_trainer(tmp_path, tiny_signals).run()
    path = tmp_path / "model.safetensors"
    flat = load_file(str(path))
    info = header_of(path)
    info.pop("checksum")
    del flat["meta/theta/layers.2.bias"]
    rewrite(path, flat, info)
    with pytest.raises(ModelError, match=r"model\.safetensors has no tensor 'meta/theta/layers\.2\.bias'"):
        MetaModel.load(path)
