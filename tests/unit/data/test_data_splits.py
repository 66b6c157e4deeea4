import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metasparse.data.images import load_images
from metasparse.data.splits import (
    SPLITS,
    ChainSplit,
    FirstSplit,
    HashSplit,
    NumberRangeSplit,
    apply_split,
    file_number,
    hash_unit,
    parse_split,
    split_files,
)
from metasparse.errors import DataError

CELEBA = [f"{i:06d}.jpg" for i in range(1, 9001)]


def test_file_number():
    assert file_number("000033.jpg") == 33
    assert file_number("n01440764/ILSVRC2012_val_00000293.JPEG") == 293
    assert file_number(Path("a1/b/img_12_v2.png")) == 2
    assert file_number("train/000007") == 7
    assert file_number("cat.png") is None


def test_celeba_named_splits():
    train = parse_split("celeba_train")(CELEBA)
    test = parse_split("celeba_test")(CELEBA)
    sample = parse_split("celeba_sample")(CELEBA)
    assert len(train) == 7968 and train[0] == "000033.jpg" and train[-1] == "008000.jpg"
    assert len(test) == 1000 and test[0] == "008001.jpg" and test[-1] == "009000.jpg"
    assert len(sample) == 32 and not set(sample) & set(train)
    assert {"celeba_train", "celeba_test", "celeba_sample", "all"} <= set(SPLITS)


def test_generic_forms():
    names = [f"f{i:03d}.png" for i in range(10)]
    assert apply_split("first:3", names) == [0, 1, 2]
    assert apply_split("last:2", names) == [8, 9]
    assert apply_split("slice:2:5", names) == [2, 3, 4]
    assert apply_split("slice:-3:", names) == [7, 8, 9]
    assert apply_split("range:3-5", names) == [3, 4, 5]
    assert apply_split("range:5-5", names) == [5]
    assert apply_split("all", names) == list(range(10))
    assert apply_split(None, names) == list(range(10))
    assert apply_split("first:100", names) == list(range(10))
    assert apply_split("range:2-8+first:2", names) == [2, 3]
    assert apply_split("last:5+slice:1:3", names) == [6, 7]


def test_range_needs_numbers():
    with pytest.raises(DataError, match="cat.png"):
        apply_split("range:1-3", ["1.png", "cat.png"])


@pytest.mark.parametrize(
    "spec",
    [
        "all",
        "first:5",
        "last:5",
        "slice:1:4",
        "slice::4",
        "range:33-8000",
        "train:0.1",
        "val:0.25,7",
        "celeba_test",
    ],
)
def test_spec_round_trip(spec):
    s = parse_split(spec)
    assert parse_split(s.spec) == s


def test_parse_objects_and_chain():
    s = FirstSplit(3)
    assert parse_split(s) is s
    chain = parse_split("celeba_train+first:10")
    assert isinstance(chain, ChainSplit) and chain.spec == "range:33-8000+first:10"
    assert chain(CELEBA) == CELEBA[32:42]
    assert parse_split("celeba_train") == NumberRangeSplit(33, 8000)
    assert parse_split("val:0.1") == HashSplit("val", 0.1, 0)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("nope", "unknown split"),
        ("first:x", "bad number"),
        ("first:-1", "N >= 0"),
        ("range:10", "bad range"),
        ("range:9-3", "empty"),
        ("slice:1", "bad slice"),
        ("val:abc", "bad fraction"),
        ("val:1.5", r"\[0, 1\]"),
        ("val:0.1,2,3", "bad hash split"),
        ("shuffle:3", "unknown split"),
    ],
)
def test_parse_errors(spec, match):
    with pytest.raises(DataError, match=match):
        parse_split(spec)


def test_split_files_is_deterministic_and_order_free():
    files = [f"dir/{i:05d}.png" for i in range(2000)]
    train, val = split_files(files, 0.1, seed=0)
    assert sorted(train + val) == files and not set(train) & set(val)
    assert 140 <= len(val) <= 260
    assert train == [f for f in files if f in set(train)]  # input order kept
    shuffled = files[:]
    random.Random(3).shuffle(shuffled)
    _, val2 = split_files(shuffled, 0.1, seed=0)
    assert set(val2) == set(val)
    assert split_files(files, 0.1, seed=0) == (train, val)
    _, val_other_seed = split_files(files, 0.1, seed=1)
    assert set(val_other_seed) != set(val)


def test_split_files_stable_when_files_are_added():
    files = [f"{i:05d}.png" for i in range(500)]
    _, val = split_files(files, 0.2)
    _, val_more = split_files(files + [f"new_{i}.png" for i in range(300)], 0.2)
    assert set(val) == {v for v in val_more if not v.startswith("new_")}


def test_split_files_edges():
    assert split_files(["a", "b"], 0.01)[1] != []  # a tiny list keeps both sides
    assert split_files(["a", "b"], 0.99)[0] != []
    assert split_files(["a", "b", "c"], 0.0) == (["a", "b", "c"], [])
    assert split_files(["a", "b", "c"], 1.0) == ([], ["a", "b", "c"])
    assert split_files([], 0.5) == ([], [])
    paths = [Path("x/a.png"), Path("x/b.png"), Path("x/c.png")]
    train, val = split_files(paths, 0.5)
    assert sorted(train + val) == paths and all(isinstance(p, Path) for p in train + val)
    assert hash_unit("x/a.png") == hash_unit(Path("x/a.png"))
    with pytest.raises(DataError):
        split_files(["a"], -0.1)


def test_hash_split_specs_partition():
    names = [f"{i}.png" for i in range(300)]
    tr = set(parse_split("train:0.3,5")(names))
    va = set(parse_split("val:0.3,5")(names))
    assert tr | va == set(names) and not tr & va
    assert (tr, va) == tuple(set(x) for x in split_files(names, 0.3, seed=5))


def test_load_images_with_named_split(tmp_path):
    for i in (1, 2, 32, 33, 34, 8000, 8001, 8002):
        Image.fromarray(np.full((3, 3, 3), i % 256, np.uint8)).save(tmp_path / f"{i:06d}.png")
    assert load_images(tmp_path, split="celeba_train").names == ["000033.png", "000034.png", "008000.png"]
    assert load_images(tmp_path, split="celeba_test").names == ["008001.png", "008002.png"]
    tr = load_images(tmp_path, split="train:0.5").names
    va = load_images(tmp_path, split="val:0.5").names
    assert sorted(tr + va) == sorted(p.name for p in tmp_path.iterdir())
