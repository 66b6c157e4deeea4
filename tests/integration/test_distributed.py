"""Data-parallel training under torchrun (gloo on CPU) and the file-sharding helpers.

The multi-process tests launch the real ``metasparse train`` with ``python -m torch.distributed.run
--standalone`` (which picks a free port itself), with a timeout so that a hung collective fails the
test instead of CI.
"""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers import write_images
from metasparse.errors import ConfigError, MetasparseError
from metasparse.training import distributed
from metasparse.training.distributed import World, batch_slice, shard, skip_existing
from metasparse.training.model_file import MetaModel

STEPS = 6
TRAIN = ["--threads", "1", "train", "demo", "--steps", str(STEPS), "--device", "cpu", "--seed", "3", "--no-evaluate",
         "--set", "model.width=12", "--set", "model.depth=2", "--set", "meta.batch_size=4",
         "--set", "train.log_every=2", "--set", "train.checkpoint_every=2"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", METASPARSE_DEBUG="")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def launch(args, nproc: int | None = None, script: str | None = None):
    """``metasparse`` (or ``script``) in one plain process, or ``nproc`` ranks under torchrun."""
    target = [script] if script else ["-m", "metasparse.cli"]
    cmd = [sys.executable, *target] if nproc is None else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *target]
    r = subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=120, env=_env(), check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def params(run_dir):
    model = MetaModel.load(run_dir / "model.safetensors")
    return {f"{g}/{k}": v for g, d in model.meta.items() for k, v in d.items()}, model.info


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("data") / "imgs", n=6, size=8)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, images):
    """An uninterrupted 2-rank run, shared by the tests that compare against it."""
    run_dir = tmp_path_factory.mktemp("two") / "run"
    r = launch([*TRAIN, "--data", images, "--out", run_dir], nproc=2)
    return run_dir, r


@pytest.mark.slow
def test_two_processes_give_the_meta_parameters_of_one(tmp_path, images, two_ranks):
    two_dir, r = two_ranks
    assert "x 2 processes (gloo)" in r.stderr
    assert r.stderr.count("done: 6 steps") == 1  # only rank 0 reports
    one_dir = tmp_path / "one"
    launch([*TRAIN, "--data", images, "--out", one_dir])
    one, _ = params(one_dir)
    two, info = params(two_dir)
    assert one.keys() == two.keys() and info["step"] == STEPS
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    # Only rank 0 writes: the run directory holds the usual files and no leftovers of a second writer.
    assert sorted(p.name for p in two_dir.iterdir()) == ["checkpoint.safetensors", "config.json", "curve.csv", "curve.png",
                                                           "model.safetensors"]


@pytest.mark.slow
def test_a_killed_two_rank_run_resumes_to_the_uninterrupted_parameters(tmp_path, images, two_ranks):
    straight, _ = params(two_ranks[0])
    run_dir = tmp_path / "run"
    # A time budget already spent stops every rank after the first chunk, through the checkpoint path.
    first = launch([*TRAIN, "--data", images, "--out", run_dir, "--time-budget", "1e-9"], nproc=2)
    assert "time budget reached at step 2" in first.stderr
    second = launch([*TRAIN, "--data", images, "--out", run_dir], nproc=2)
    assert second.stderr.count("resumed from step 2") == 1
    resumed, info = params(run_dir)
    assert info["step"] == STEPS
    for k in straight:
        assert torch.equal(resumed[k], straight[k]), k


@pytest.mark.slow
def test_one_rank_under_torchrun_is_the_single_process_run_bitwise(tmp_path, images):
    launch([*TRAIN, "--data", images, "--out", tmp_path / "plain", "--steps", "2"])
    launch([*TRAIN, "--data", images, "--out", tmp_path / "rank", "--steps", "2"], nproc=1)
    plain, _ = params(tmp_path / "plain")
    ranked, _ = params(tmp_path / "rank")
    for k in plain:
        assert torch.equal(plain[k], ranked[k]), k


COLLECTIVES = textwrap.dedent("""
    import pathlib
    import sys

    import torch
    from metasparse.training import distributed as d

    torch.set_num_threads(1)
    w, dev = d.init_from_env("cpu")
    assert w.distributed and w.size == 2 and w.backend == "gloo" and dev.type == "cpu", w
    a = torch.full((2, 3), float(w.rank + 1))
    b = torch.tensor([10.0 * w.rank], dtype=torch.float64)
    d.all_reduce_mean_([a, b])
    assert torch.equal(a, torch.full((2, 3), 1.5)) and b.item() == 5.0 and b.dtype == torch.float64
    assert d.all_gather_cat(torch.tensor([w.rank, w.rank])).tolist() == [0, 0, 1, 1]
    assert d.agree(w.rank == 0) is True  # rank 0 decides
    d.check_same([1.0, 2.0], "constants")
    try:
        d.check_same([float(w.rank)], "the rank")
        raise SystemExit("check_same accepted different values")
    except d.DistributedError as e:
        assert "ranks [1] disagree" in str(e), e
    assert d.main_only(lambda: "written") == ("written" if w.rank == 0 else None)
    assert d.shard(list("abcde")) == (["a", "c", "e"] if w.rank == 0 else ["b", "d"])
    d.shutdown()
    # One file per rank: the ranks share stdout, where their lines can interleave.
    (pathlib.Path(sys.argv[1]) / f"ok{w.rank}").write_text("ok")
""")


@pytest.mark.slow
def test_collectives_on_two_gloo_ranks(tmp_path):
    script = tmp_path / "collectives.py"
    script.write_text(COLLECTIVES)
    done = tmp_path / "done"
    done.mkdir()
    launch([done], nproc=2, script=str(script))
    assert sorted(p.name for p in done.iterdir()) == ["ok0", "ok1"]


# -- helpers without a process group -----------------------------------------------------------
def test_outside_torchrun_nothing_is_initialised(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    w, dev = distributed.init_from_env("cpu")
    assert w == World() and not w.distributed and w.is_main and dev == torch.device("cpu")
    assert distributed.world() == World()
    tensors = [torch.ones(3)]
    distributed.all_reduce_mean_(tensors)
    assert torch.equal(tensors[0], torch.ones(3))
    assert distributed.agree(False) is False
    assert distributed.main_only(lambda x: x + 1, 1) == 2


def test_batch_slices_cover_the_global_batch_and_must_divide():
    slices = [batch_slice(8, World(rank=r, size=4, backend="gloo")) for r in range(4)]
    assert [list(range(8))[s] for s in slices] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert batch_slice(3, World()) == slice(0, 3)
    with pytest.raises(ConfigError, match="meta.batch_size=4"):
        batch_slice(3, World(rank=0, size=2, backend="gloo"))


@pytest.mark.parametrize("world", [1, 2, 3, 7, 12])
def test_shards_are_disjoint_and_cover_every_item(world):
    items = [f"img{i:02d}.png" for i in range(10)]
    shares = [shard(items, r, world) for r in range(world)]
    assert sorted(x for s in shares for x in s) == items
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert shares[0] == items[::world]


def test_shard_defaults_to_torchrun_environment_and_checks_its_arguments(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert shard(list(range(7))) == [1, 4]
    assert shard(list(range(7)), rank=0) == [0, 3, 6]
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert shard([1, 2, 3]) == [1, 2, 3]
    for rank, world in [(2, 2), (-1, 2), (0, 0)]:
        with pytest.raises(ConfigError):
            shard([1, 2], rank, world)
    monkeypatch.setenv("RANK", "x")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="RANK"):
        shard([1, 2])


def test_skip_existing_keeps_outputs_that_exist_and_verify(tmp_path):
    good, bad, missing, broken, folder = (tmp_path / n for n in ("good.mspz", "bad.mspz", "missing.mspz",
                                                                 "broken.mspz", "folder.mspz"))
    good.write_bytes(b"OK")
    bad.write_bytes(b"truncated")
    broken.write_bytes(b"unreadable")
    folder.mkdir()

    def verifies(path):
        if path.name == "broken.mspz":
            raise MetasparseError("corrupt header")
        return path.read_bytes() == b"OK"

    jobs = [(tmp_path / f"{p.stem}.png", p) for p in (good, bad, missing, broken, folder)]
    to_do, skipped = skip_existing(jobs, verifies)
    assert skipped == [jobs[0]] and to_do == jobs[1:]
    to_do, skipped = skip_existing([good, missing], verifies)
    assert (to_do, skipped) == ([missing], [good])
    named = [{"out": str(good)}, {"out": str(bad)}]
    to_do, skipped = skip_existing(named, verifies, output=lambda job: job["out"])
    assert (to_do, skipped) == ([named[1]], [named[0]])


def test_skip_existing_then_shard_gives_each_rank_its_remaining_files(tmp_path):
    outputs = [tmp_path / f"{i}.out" for i in range(6)]
    for p in outputs[:2]:
        p.write_text("done")
    to_do, _ = skip_existing(outputs, lambda p: p.read_text() == "done")
    shares = [shard(to_do, r, 2) for r in range(2)]
    assert shares == [[outputs[2], outputs[4]], [outputs[3], outputs[5]]]
