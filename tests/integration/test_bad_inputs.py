"""Bad command lines and bad files, across every verb: each ends with a non-zero exit and either a
usage block (exit 2: the usage line, then one ``Error:`` line) or one ``error:`` line (exit 1), and
never a traceback or an "internal error"."""

import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metasparse.cli import main

CODEC_FILES = Path(__file__).parents[1] / "unit" / "codec" / "data"
USAGE, DATA = 2, 1

TINY_TRAINING = ["--steps", "1", "--device", "cpu", "--no-evaluate", "--set", "model.width=8",
                 "--set", "model.depth=2", "--set", "train.log_every=1", "--set", "fit.steps=1"]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zero_by_zero_png() -> bytes:
    """A PNG whose header is well formed (valid CRCs) but declares 0x0 pixels."""
    header = struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b""))
            + png_chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny inputs, made once: good ones to pair with bad options, and bad ones."""
    root = tmp_path_factory.mktemp("bad-inputs")
    rng = np.random.default_rng(0)
    f = {"root": root}
    images = root / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(images / f"img{i}.png")
    f["images"] = images
    f["png"] = images / "img0.png"
    f["corrupt_png"] = root / "corrupt.png"
    f["corrupt_png"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2)
    f["text_png"] = root / "notes.png"
    f["text_png"].write_text("this is a text file with an image's name\n")
    f["empty_png"] = root / "empty.png"
    f["empty_png"].write_bytes(b"")
    f["zero_png"] = root / "zero.png"
    f["zero_png"].write_bytes(zero_by_zero_png())
    f["nan_npz"] = root / "nan.npz"
    np.savez(f["nan_npz"], images=np.full((2, 8, 8, 3), np.nan, dtype=np.float32))
    f["no_images_npz"] = root / "other.npz"
    np.savez(f["no_images_npz"], pixels=np.zeros((2, 8, 8, 3), dtype=np.uint8))
    f["mspz"] = root / "astronaut.mspz"
    shutil.copy(CODEC_FILES / "astronaut-48x64.mspz", f["mspz"])
    good = f["mspz"].read_bytes()
    f["truncated_mspz"] = root / "truncated.mspz"
    f["truncated_mspz"].write_bytes(good[: len(good) // 2])
    f["header_only_mspz"] = root / "header.mspz"
    f["header_only_mspz"].write_bytes(good[:12])
    f["garbage_mspz"] = root / "garbage.mspz"
    f["garbage_mspz"].write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    f["empty_mspz"] = root / "empty.mspz"
    f["empty_mspz"].write_bytes(b"")
    f["png_as_mspz"] = root / "image.mspz"
    shutil.copy(f["png"], f["png_as_mspz"])
    f["text_model"] = root / "model.safetensors"
    f["text_model"].write_text("not a model\n")
    f["bad_json"] = root / "config.json"
    f["bad_json"].write_text("{not json")
    f["list_json"] = root / "list.json"
    f["list_json"].write_text("[1, 2, 3]")
    f["binary_json"] = root / "binary.json"
    f["binary_json"].write_bytes(b"\xff\xfe\x00\x81")
    f["clash_png"] = root / "clash.png"
    shutil.copy(f["png"], f["clash_png"])
    (root / "clash.mspz").mkdir()  # where compress would write clash.png's output
    f["a_folder"] = root / "a-folder.mspz"
    f["a_folder"].mkdir()
    f["a_folder_json"] = root / "folder.json"
    f["a_folder_json"].mkdir()
    f["missing"] = root / "missing"
    from metasparse.codec.zoo import bundled_model_path

    f["codec_model"] = bundled_model_path("default")
    return f


@pytest.fixture(scope="module")
def trained(files):
    """A one-step model of the demo preset: a network without modulations, not a codec model."""
    run = files["root"] / "run"
    code, _, err = run_main(["train", "demo", "--data", files["images"], "--out", run, *TINY_TRAINING])
    if code != 0:
        pytest.skip(f"the tiny training run failed: {err.strip().splitlines()[-1:]}")
    return run / "model.safetensors"


def run_main(argv):
    """metasparse.cli.main in this process: (exit code, stdout, stderr)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def assert_clean_failure(code, err, expected):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0, "the command succeeded"
    assert "Traceback" not in err and "internal error" not in err, err
    assert lines, "nothing said on stderr"
    if expected is not None:
        assert code == expected, err
    if code == USAGE:
        assert any(line.startswith("Usage:") for line in lines), err
        assert [line for line in lines if line.startswith("Error:")] == [lines[-1]], err
    else:
        assert code == DATA, err
        errors = [line for line in lines if line.lower().startswith("error")]
        assert errors == [lines[-1]], err  # one error line, the last thing said


def case(id_, expected, build, *marks, contains=None):
    return pytest.param(build, expected, contains, id=id_, marks=marks)


def evaluate_with(*options):
    """evaluate with options that are wrong whatever the model is (it is never read)."""
    return lambda f: ["evaluate", f["text_model"], "--data", f["images"], *options]


CASES = [
    # the program and its global option
    case("unknown-verb", USAGE, lambda f: ["nosuchverb"]),
    case("threads-not-int", USAGE, lambda f: ["--threads", "x", "presets"]),
    case("threads-zero", USAGE, lambda f: ["--threads", "0", "presets"]),
    case("threads-negative", USAGE, lambda f: ["--threads", "-2", "presets"]),
    case("unknown-global-option", USAGE, lambda f: ["--verbose", "presets"]),
    case("presets-extra-argument", USAGE, lambda f: ["presets", "extra"]),
    # train
    case("train-missing-preset", USAGE, lambda f: ["train"]),
    case("train-unknown-option", USAGE, lambda f: ["train", "demo", "--nosuch"]),
    case("train-steps-not-int", USAGE, lambda f: ["train", "demo", "--steps", "abc"]),
    case("train-steps-negative", USAGE, lambda f: ["train", "demo", "--steps", "-5"]),
    case("train-seed-negative", USAGE, lambda f: ["train", "demo", "--seed", "-1"]),
    case("train-time-budget-zero", USAGE, lambda f: ["train", "demo", "--time-budget", "0"]),
    case("train-time-budget-nan", USAGE, lambda f: ["train", "demo", "--time-budget", "nan"]),
    case("train-device-nonsense", USAGE, lambda f: ["train", "demo", "--device", "gpu"]),
    case("train-unknown-preset", DATA, lambda f: ["train", "no-such-preset"], contains="unknown preset"),
    case("train-config-missing", DATA, lambda f: ["train", f["missing"] / "config.json"]),
    case("train-config-folder", DATA, lambda f: ["train", f["a_folder_json"]]),
    case("train-config-not-json", DATA, lambda f: ["train", f["bad_json"]]),
    case("train-config-binary", DATA, lambda f: ["train", f["binary_json"]]),
    case("train-config-a-list", DATA, lambda f: ["train", f["list_json"]]),
    case("train-data-missing", DATA, lambda f: ["train", "demo", "--data", f["missing"], "--out", "r1"]),
    case("train-data-corrupt-png", DATA,
         lambda f: ["train", "demo", "--data", f["corrupt_png"], "--out", "r2", *TINY_TRAINING]),
    case("train-data-text-png", DATA,
         lambda f: ["train", "demo", "--data", f["text_png"], "--out", "r3", *TINY_TRAINING]),
    case("train-data-nan-npz", DATA,
         lambda f: ["train", "demo", "--data", f["nan_npz"], "--out", "r4", *TINY_TRAINING]),
    case("train-data-npz-without-images", DATA,
         lambda f: ["train", "demo", "--data", f["no_images_npz"], "--out", "r5", *TINY_TRAINING]),
    case("train-out-is-a-file", DATA, lambda f: ["train", "demo", "--data", f["images"], "--out", f["png"]]),
    case("train-out-under-a-file", DATA,
         lambda f: ["train", "demo", "--data", f["images"], "--out", f["png"] / "run"]),
    case("train-set-unknown-field", DATA, lambda f: ["train", "demo", "--set", "meta.nope=1"]),
    case("train-set-no-equals", DATA, lambda f: ["train", "demo", "--set", "meta.batch_size"]),
    case("train-set-misspelt-choice", DATA, lambda f: ["train", "demo", "--set", "meta.algorithm=fomal"],
         contains="fomal"),
    case("train-set-zero-batch", DATA, lambda f: ["train", "demo", "--set", "meta.batch_size=0"]),
    case("train-set-bool-width", DATA, lambda f: ["train", "demo", "--set", "model.width=true"]),
    # evaluate
    case("evaluate-missing-model-argument", USAGE, lambda f: ["evaluate"]),
    case("evaluate-missing-data-option", USAGE, lambda f: ["evaluate", f["text_model"]]),
    case("evaluate-steps-negative", USAGE, evaluate_with("--steps", "-1")),
    case("evaluate-lr-zero", USAGE, evaluate_with("--lr", "0")),
    case("evaluate-lr-inf", USAGE, evaluate_with("--lr", "inf")),
    case("evaluate-unknown-optimizer", USAGE, evaluate_with("--optimizer", "adamw")),
    case("evaluate-limit-zero", USAGE, evaluate_with("--limit", "0")),
    case("evaluate-ema-one", USAGE, evaluate_with("--ema", "1")),
    case("evaluate-device-nonsense", USAGE, evaluate_with("--device", "tpu9")),
    case("evaluate-model-missing", DATA,
         lambda f: ["evaluate", f["missing"] / "m.safetensors", "--data", "samples"]),
    case("evaluate-model-is-text", DATA, lambda f: ["evaluate", f["text_model"], "--data", f["images"]]),
    case("evaluate-model-is-a-folder", DATA, lambda f: ["evaluate", f["images"], "--data", f["images"]]),
    case("evaluate-out-under-a-file", DATA,
         lambda f: evaluate_with("--out", f["png"] / "eval")(f)),
    case("evaluate-grid-under-a-file", DATA,
         lambda f: evaluate_with("--out", "ev", "--grid", f["png"] / "g")(f)),
    # experiment
    case("experiment-unknown", DATA, lambda f: ["experiment", "nosuch"],
         contains="unknown experiment 'nosuch'"),
    case("experiment-unknown-with-data", DATA, lambda f: ["experiment", "nosuch", "--data", f["images"]],
         contains="mscn-functa"),
    case("experiment-unknown-scale", DATA, lambda f: ["experiment", "fig2", "--scale", "huge"],
         contains="unknown scale"),
    case("experiment-scale-of-another-kind", DATA,
         lambda f: ["experiment", "mscn-functa", "--scale", "cpu-deep"]),
    case("experiment-missing-data", USAGE, lambda f: ["experiment", "fig2"], contains="--data"),
    case("experiment-seeds-zero", USAGE, lambda f: ["experiment", "fig2", "--seeds", "0"]),
    case("experiment-threads-zero", USAGE, lambda f: ["experiment", "fig2", "--threads", "0"]),
    case("experiment-device-nonsense", USAGE, lambda f: ["experiment", "fig2", "--device", "gpu"]),
    case("experiment-data-missing", DATA,
         lambda f: ["experiment", "fig4", "--data", f["missing"], "--out", "x1"]),
    # bench and dist-info
    case("bench-size-zero", USAGE, lambda f: ["bench", "--size", "0"]),
    case("bench-repeats-negative", USAGE, lambda f: ["bench", "--repeats", "-1"]),
    case("bench-fit-steps-negative", USAGE, lambda f: ["bench", "--fit-steps", "-1"]),
    case("bench-w0-inf", USAGE, lambda f: ["bench", "--w0", "inf"]),
    case("bench-settings-unknown", USAGE, lambda f: ["bench", "--settings", "nosuch"]),
    case("bench-json-under-a-file", DATA, lambda f: ["bench", "--json", f["png"] / "b.json"]),
    case("dist-info-megabytes-zero", USAGE, lambda f: ["dist-info", "--megabytes", "0"]),
    case("dist-info-megabytes-nan", USAGE, lambda f: ["dist-info", "--megabytes", "nan"]),
    # compress
    case("compress-missing-argument", USAGE, lambda f: ["compress"]),
    case("compress-quality-not-int", USAGE, lambda f: ["compress", f["png"], "-q", "abc"]),
    case("compress-quality-zero", None, lambda f: ["compress", f["png"], "-q", "0"]),
    case("compress-quality-too-high", None, lambda f: ["compress", f["png"], "-q", "99"]),
    case("compress-max-patches-zero", None, lambda f: ["compress", f["png"], "--max-patches", "0"]),
    case("compress-device-nonsense", USAGE, lambda f: ["compress", f["png"], "--device", "gpu"]),
    case("decompress-device-nonsense", USAGE, lambda f: ["decompress", f["mspz"], "--device", "gpu"]),
    case("compress-missing-file", DATA, lambda f: ["compress", f["missing"] / "a.png", "-o", "c/"]),
    case("compress-a-folder", DATA, lambda f: ["compress", f["images"], "-o", "c/"]),
    case("compress-corrupt-png", DATA, lambda f: ["compress", f["corrupt_png"], "-o", "c/"]),
    case("compress-text-named-png", DATA, lambda f: ["compress", f["text_png"], "-o", "c/"]),
    case("compress-empty-png", DATA, lambda f: ["compress", f["empty_png"], "-o", "c/"]),
    case("compress-zero-by-zero-png", DATA, lambda f: ["compress", f["zero_png"], "-o", "c/"]),
    case("compress-unknown-model", DATA, lambda f: ["compress", f["png"], "-m", "nosuch", "-o", "c/"]),
    case("compress-model-is-text", DATA, lambda f: ["compress", f["png"], "-m", f["text_model"]]),
    case("compress-model-not-a-codec", DATA,
         lambda f: ["compress", f["png"], "-m", f["trained"], "-o", "c/"]),
    case("compress-output-under-a-file", DATA, lambda f: ["compress", f["png"], "-o", f["png"] / "x.mspz"]),
    case("compress-output-is-a-folder", DATA, lambda f: ["compress", f["clash_png"], "--force"],
         contains="folder"),
    # decompress
    case("decompress-missing-argument", USAGE, lambda f: ["decompress"]),
    case("decompress-missing-file", DATA, lambda f: ["decompress", f["missing"] / "a.mspz"]),
    case("decompress-a-folder", DATA, lambda f: ["decompress", f["a_folder"]]),
    case("decompress-truncated", DATA, lambda f: ["decompress", f["truncated_mspz"], "-o", "d1.png"]),
    case("decompress-header-only", DATA, lambda f: ["decompress", f["header_only_mspz"], "-o", "d2.png"]),
    case("decompress-garbage", DATA, lambda f: ["decompress", f["garbage_mspz"], "-o", "d3.png"]),
    case("decompress-empty", DATA, lambda f: ["decompress", f["empty_mspz"], "-o", "d4.png"]),
    case("decompress-png-named-mspz", DATA, lambda f: ["decompress", f["png_as_mspz"], "-o", "d5.png"]),
    case("decompress-model-is-text", DATA, lambda f: ["decompress", f["mspz"], "-m", f["text_model"]]),
    case("decompress-original-text", DATA,
         lambda f: ["decompress", f["mspz"], "-o", "d6.png", "--original", f["text_png"]]),
    case("decompress-original-wrong-size", DATA,
         lambda f: ["decompress", f["mspz"], "-o", "d7.png", "--original", f["png"]]),
    case("decompress-original-missing", DATA,
         lambda f: ["decompress", f["mspz"], "-o", "d8.png", "--original", f["missing"] / "a.png"]),
    case("decompress-output-under-a-file", DATA,
         lambda f: ["decompress", f["mspz"], "-o", f["png"] / "d.png"]),
    # info
    case("info-missing-argument", USAGE, lambda f: ["info"]),
    case("info-truncated", DATA, lambda f: ["info", f["truncated_mspz"]]),
    case("info-header-only", DATA, lambda f: ["info", f["header_only_mspz"]]),
    case("info-empty", DATA, lambda f: ["info", f["empty_mspz"]]),
    case("info-garbage", DATA, lambda f: ["info", f["garbage_mspz"]]),
    case("info-a-folder", DATA, lambda f: ["info", f["a_folder"]]),
    case("info-model-is-text", DATA, lambda f: ["info", f["mspz"], "-m", f["text_model"]]),
    # codec-build
    case("codec-build-missing-argument", USAGE, lambda f: ["codec-build"]),
    case("codec-build-missing-output", USAGE,
         lambda f: ["codec-build", f["text_model"], "--data", f["images"]]),
    case("codec-build-patches-not-int", USAGE,
         lambda f: ["codec-build", f["text_model"], "--data", f["images"], "-o", "cb", "--patches", "x"]),
    case("codec-build-network-missing", DATA,
         lambda f: ["codec-build", f["missing"] / "m.safetensors", "--data", f["images"], "-o", "cb1"]),
    case("codec-build-network-is-text", DATA,
         lambda f: ["codec-build", f["text_model"], "--data", f["images"], "-o", "cb2"]),
    case("codec-build-network-without-modulations", DATA,
         lambda f: ["codec-build", f["trained"], "--data", f["images"], "-o", "cb3",
                    "--patches", "4", "--steps", "1"],
         contains="modulations"),
    case("codec-build-bad-budgets", None,
         lambda f: ["codec-build", f["text_model"], "--data", f["images"], "-o", "cb4", "--budgets", "a,b"],
         contains="--budgets"),
    case("codec-build-patches-zero", USAGE,
         lambda f: ["codec-build", f["trained"], "--data", f["images"], "-o", "cb5", "--patches", "0"]),
    case("codec-build-lr-nan", USAGE,
         lambda f: ["codec-build", f["trained"], "--data", f["images"], "-o", "cb6", "--lr", "nan"]),
    case("codec-build-output-under-a-file", DATA,
         lambda f: ["codec-build", f["trained"], "--data", f["images"], "-o", f["png"] / "cb.safetensors"]),
    # rd
    case("rd-missing-data", USAGE, lambda f: ["rd"]),
    case("rd-data-missing", DATA, lambda f: ["rd", "--data", f["missing"], "-o", "rd1"]),
    case("rd-limit-zero", None, lambda f: ["rd", "--data", f["images"], "--limit", "0", "-o", "rd2"]),
    case("rd-unknown-codec", DATA,
         lambda f: ["rd", "--data", f["images"], "--codecs", "nosuch", "-o", "rd3"], contains="nosuch"),
    case("rd-model-is-text", DATA, lambda f: ["rd", "--data", f["images"], "-m", f["text_model"]]),
]


class Inputs(dict):
    """The files, plus the trained model made only when a case asks for it."""

    def __init__(self, files, request):
        super().__init__(files)
        self.request = request

    def __missing__(self, key):
        if key != "trained":
            raise KeyError(key)
        self[key] = self.request.getfixturevalue("trained")
        return self[key]


def test_the_table_covers_every_verb():
    from metasparse.cli import app

    verbs = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    assert {"train", "evaluate", "compress", "decompress", "info", "rd", "codec-build", "experiment"} <= verbs
    uncovered = {verb for verb in verbs if not any(param.id.startswith(verb + "-") for param in CASES)}
    assert uncovered <= {"presets"}, uncovered  # presets takes no options: only "presets-extra-argument"
    assert len(CASES) >= 40


@pytest.mark.parametrize("build, expected, contains", CASES)
def test_bad_input_is_one_clean_error(build, expected, contains, files, request, monkeypatch):
    argv = build(Inputs(files, request))
    monkeypatch.chdir(files["root"])  # outputs named in the table, and default ones (runs/, rd/), land here
    code, _, err = run_main(argv)
    assert_clean_failure(code, err, expected)
    if contains is not None:
        assert contains in err


@pytest.mark.parametrize(
    "source, original", [("truncated_mspz", None), ("mspz", "text_png"), ("mspz", "png")],
    ids=["truncated", "original-unreadable", "original-wrong-size"],
)
def test_no_output_is_left_behind_by_a_failed_decompress(files, source, original):
    target = files["root"] / f"left-{source}-{original}.png"
    extra = [] if original is None else ["--original", files[original]]
    code, _, err = run_main(["decompress", files[source], "-o", target, *extra])
    assert code == DATA and not target.exists(), err


def test_usage_errors_as_a_user_sees_them():
    """Through the console script: exit 2, the usage line and one error, nothing on stdout."""
    result = subprocess.run([sys.executable, "-m", "metasparse.cli", "--threads", "x", "presets"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == USAGE
    assert result.stderr.startswith("Usage: python -m metasparse.cli")
    assert result.stderr.rstrip().splitlines()[-1].startswith("Error: Invalid value for '--threads'")
    assert result.stdout == ""
