"""A run's training curve is written as CSV and PNG."""

from __future__ import annotations

import csv

from metasparse.viz.curves import save_training_curve


def test_the_curve_files_hold_every_logged_entry_and_rounds_are_kept(tmp_path):
    history = [{"step": 5 * k, "round": k // 3, "loss": 0.1 / k, "psnr": 10.0 + k, "seconds": 0.5} for k in range(1, 8)]
    csv_path, png_path = save_training_curve(history, tmp_path, "title", "PSNR (dB)", resumed_at=[15])
    rows = list(csv.DictReader(csv_path.read_text().splitlines()))
    assert [int(r["step"]) for r in rows] == [e["step"] for e in history]
    assert [int(r["round"]) for r in rows] == [e["round"] for e in history]
    assert float(rows[-1]["psnr"]) == 17.0
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nothing_logged_writes_nothing(tmp_path):
    assert save_training_curve([], tmp_path, "title", "PSNR") is None
    assert not list(tmp_path.iterdir())
