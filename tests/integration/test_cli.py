import json
import subprocess
import sys

import pytest
from PIL import Image

from helpers import write_images
from metasparse.cli import main

TINY = ["--set", "model.width=16", "--set", "model.depth=2", "--set", "fit.steps=5", "--set", "train.log_every=2"]


def run_cli(*args):
    """Run the installed entry point in a subprocess: what a user sees, exit code included."""
    return subprocess.run([sys.executable, "-m", "metasparse.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, check=False)


def test_train_then_evaluate_writes_results(tmp_path, capsys):
    data = write_images(tmp_path / "imgs")
    run_dir = tmp_path / "run"
    main(["train", "demo", "--data", str(data), "--val-data", str(data), "--steps", "4", "--out", str(run_dir),
          "--device", "cpu", *TINY])
    assert (run_dir / "model.safetensors").exists() and (run_dir / "config.json").exists()
    report = json.loads((run_dir / "eval" / "results.json").read_text())
    assert report["signals"] == 4 and len(report["psnr_trajectory_mean"]) == 6
    grid = tmp_path / "grid.png"
    main(["evaluate", str(run_dir / "model.safetensors"), "--data", str(data), "--steps", "3", "--grid", str(grid),
          "--out", str(tmp_path / "ev")])
    assert Image.open(grid).size == (12 * 4, 24)
    assert "PSNR after 3 adam steps on 4 signals" in capsys.readouterr().out


def test_presets_are_listed():
    r = run_cli("presets")
    assert r.returncode == 0 and "siren-imagenette" in r.stdout and "demo" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "no-such-preset"], "unknown preset"),
        (["train", "demo", "--data", "/no/such/folder"], "/no/such/folder"),
        (["evaluate", "missing.safetensors", "--data", "samples"], "model file not found"),
        (["train", "demo", "--set", "meta.nope=1"], "unknown"),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path, args, message):
    r = run_cli(*args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert message in r.stderr
    assert len([line for line in r.stderr.splitlines() if line.startswith("error")]) == 1


def test_corrupt_model_and_wrong_data_are_refused(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model at all")
    r = run_cli("evaluate", bad, "--data", "samples")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "not a readable" in r.stderr
    data = write_images(tmp_path / "imgs")
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    r = run_cli("train", "demo", "--data", data, "--steps", "1", "--out", tmp_path / "r")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "broken.png" in r.stderr


@pytest.fixture
def extra_command(monkeypatch):
    """Adds a command to the CLI for one test (main() builds the command tree on each call)."""
    from metasparse.cli import app

    monkeypatch.setattr(app, "registered_commands", list(app.registered_commands))
    return lambda function: app.command("probe")(function)


def run_in_process(args):
    with pytest.raises(SystemExit) as stopped:
        main(args)
    return stopped.value.code


@pytest.mark.parametrize(
    "raised, code, message",
    [
        (KeyboardInterrupt(), 130, "interrupted (the last checkpoint is kept"),
        (__import__("typer").Exit(4), 4, None),
        (__import__("typer").Abort(), 130, "aborted"),
        (BrokenPipeError(), 1, None),
        (ZeroDivisionError("a bug"), 3, "internal error: ZeroDivisionError: a bug"),
    ],
    ids=["ctrl-c", "exit-code", "abort", "broken-pipe", "bug"],
)
def test_how_a_command_ends_is_its_exit_code(extra_command, capsys, raised, code, message):
    """typer turns Ctrl-C and Exit into a returned code in its non-standalone mode; main() keeps both."""

    @extra_command
    def probe() -> None:
        raise raised

    assert run_in_process(["probe"]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if message is None:
        assert err == ""
    else:
        assert err.strip().splitlines() == [line for line in err.strip().splitlines() if message in line]


def test_a_usage_error_raised_by_a_command_shows_the_usage(extra_command, capsys):
    import typer

    @extra_command
    def probe(ctx: typer.Context) -> None:
        ctx.fail("Missing option '--data'.")

    assert run_in_process(["probe"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: metasparse probe")
    assert err.rstrip().endswith("Error: Missing option '--data'.")


def test_experiment_names_the_unknown_experiment_before_anything_else(capsys):
    """It used to ask for --data first, then print its banner and name only the fig2/fig3 experiments."""
    assert run_in_process(["experiment", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown experiment 'nosuch'" in err
    for known in ("fig2", "mscn-functa", "winning-ticket", "cross-dataset"):
        assert known in err


def test_output_folders_are_checked_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code = run_in_process(["train", "demo", "--data", str(tmp_path), "--out", str(blocker / "run")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.strip() == f"error: run directory {blocker / 'run'} cannot be created: {blocker} is a file"


def test_messages_are_printed_verbatim(extra_command, capsys):
    """rich turned ``slice:A:B`` in a split's message into ``slice🅰B`` (an emoji code)."""
    from metasparse.errors import DataError

    @extra_command
    def probe() -> None:
        raise DataError("unknown split; available: slice:A:B, [bold]x[/bold]")

    assert run_in_process(["probe"]) == 1
    assert capsys.readouterr().err == "error: unknown split; available: slice:A:B, [bold]x[/bold]\n"
