"""bench/gpu_campaign.py runs every stage in its tiny mode on CPU, so a lent GPU's minutes are not spent
finding out that it does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_campaign.py"
STAGES = {"meta-step", "distributed", "codec", "meta-step-compiled", "train"}


def campaign(*args, timeout: float = 300):
    env = dict(os.environ, METASPARSE_DEBUG="")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # a campaign started inside another launch would otherwise try to join it
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT, check=False)


def test_tiny_campaign_runs_every_stage_and_writes_a_committable_folder(tmp_path):
    out = tmp_path / "campaign"
    done = campaign("--tiny", "--out", out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    stages = {stage["name"]: stage for stage in summary["stages"]}
    assert set(stages) == STAGES
    for name, stage in stages.items():
        assert stage["status"] == "ok", f"{name}: {stage.get('error')} (see {out / stage['log']})"
    for name in ("meta-step", "meta-step-compiled"):
        rows = stages[name]["results"]["rows"]
        assert rows[0]["name"].startswith("naive") and all(row["gradient_ok"] for row in rows)
    assert any("compile" in row["name"] for row in stages["meta-step-compiled"]["results"]["rows"])
    assert stages["distributed"]["results"]["backend"] == "gloo"
    training = stages["train"]["results"]
    assert training["steps"] == training["total_steps"] == 30
    for path in ("train/model.safetensors", "train/curve.csv", "train/curve.png", "train/config.json",
                 "summary.md", "meta-step/table.md", "codec/table.md", "logs/train.log"):
        assert (out / path).is_file(), path
    assert "![training curve](train/curve.png)" in (out / "summary.md").read_text()
    # The distributed check's run directory is a temporary one, neither kept nor named.
    assert "campaign-distributed-" not in (out / "summary.md").read_text()


def test_a_budget_too_small_for_a_stage_skips_it_and_says_so(tmp_path):
    done = campaign("--tiny", "--out", tmp_path, "--budget-minutes", "0.05", "--stages", "codec", timeout=60)
    assert done.returncode == 1
    (stage,) = json.loads((tmp_path / "summary.json").read_text())["stages"]
    assert stage["name"] == "codec" and stage["status"] == "skipped"


def test_training_variants_run_side_by_side_and_a_failed_one_is_retried_on_the_other_engine(tmp_path):
    done = campaign("--tiny", "--out", tmp_path, "--stages", "train", "--variant", "narrow model.width=8",
                    "--variant", "broken model.width=-1", timeout=240)
    assert done.returncode == 1  # one variant failed
    (stage,) = json.loads((tmp_path / "summary.json").read_text())["stages"]
    assert stage["status"] == "partial"
    narrow, broken = stage["results"]["variants"]
    assert narrow["name"] == "narrow" and narrow["status"] == "ok"
    assert narrow["results"]["variant_sets"] == ["model.width=8"] and narrow["results"]["steps"] == 30
    assert broken["status"] == "error" and broken["first_attempt"]["status"] == "error"
    assert (tmp_path / "train" / "narrow" / "model.safetensors").is_file()
    assert (tmp_path / "train" / "variants.png").is_file()
    assert (tmp_path / "logs" / "train-broken-retry.log").is_file()
    summary = (tmp_path / "summary.md").read_text()
    assert "started again with `meta.fast_siren=false`" in summary and "| narrow |" in summary


def test_a_variant_without_a_name_is_refused(tmp_path):
    done = campaign("--tiny", "--out", tmp_path, "--variant", "model.width=8", timeout=60)
    assert done.returncode == 2 and "NAME" in done.stderr
