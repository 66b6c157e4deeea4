"""The rate-distortion summary and plot: lossless images, and every codec visible even on tiny images."""

import json
import math
from pathlib import Path

import pytest

from metasparse.codec.rd import _strict_json, _x_limit, plot, summarise


def _points(codec, rates, payload=float("nan")):
    return [{"codec": codec, "quality": i, "bpp": r, "payload_bpp": payload, "psnr": 20.0 + i,
             "ms_ssim": 0.5} for i, r in enumerate(rates)]


def test_x_limit_stops_at_2_bpp_when_every_codec_is_below() -> None:
    by_codec = {"metasparse": _points("metasparse", [0.1, 0.2]), "jpeg": _points("jpeg", [0.3, 0.8, 6.0])}
    assert _x_limit(by_codec) == 2.0 * 1.05


def test_x_limit_reaches_the_second_rate_of_a_codec_that_starts_above_2_bpp() -> None:
    by_codec = {"metasparse": _points("metasparse", [0.45, 0.5]), "hevc": _points("hevc", [3.6, 3.7, 9.0])}
    assert _x_limit(by_codec) == 3.7 * 1.05


def test_x_limit_never_beyond_the_highest_rate() -> None:
    assert _x_limit({"jpeg": _points("jpeg", [0.5, 1.0])}) == 1.0 * 1.05


def test_plot_draws_payload_curve_and_writes_png(tmp_path: Path) -> None:
    summary = _points("metasparse", [0.45, 0.5], payload=0.05) + _points("jpeg", [2.4, 2.6])
    plot(summary, tmp_path / "rd.png", title="tiny")
    assert (tmp_path / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _row(codec, quality, psnr):
    return {"codec": codec, "quality": quality, "bpp": 1.0, "payload_bpp": float("nan"), "psnr": psnr,
            "ms_ssim": 1.0, "encode_s": 0.01, "decode_s": float("nan")}


def test_lossless_images_are_counted_and_left_out_of_the_psnr_mean() -> None:
    rows = [_row("jpeg", 95, 30.0), _row("jpeg", 95, 34.0), _row("jpeg", 95, math.inf),
            _row("jpeg", 100, math.inf), _row("jpeg", 100, math.inf)]
    by_quality = {s["quality"]: s for s in summarise(rows)}
    assert by_quality[95]["psnr"] == pytest.approx(32.0) and by_quality[95]["psnr_std"] == pytest.approx(2.0)
    assert by_quality[95]["lossless"] == 1 and by_quality[95]["images"] == 3
    assert by_quality[100]["psnr"] == math.inf and by_quality[100]["lossless"] == 2


def test_summary_json_is_strict_and_an_all_lossless_quality_still_plots(tmp_path: Path) -> None:
    summary = summarise([_row("png", 0, math.inf), _row("jpeg", 90, 25.0), _row("jpeg", 95, math.inf)])
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    back = json.loads(json.dumps(_strict_json(summary)), parse_constant=refuse)
    assert [s["psnr"] for s in back] == [None, 25.0, None] and back[0]["lossless"] == 1
    plot(summary, tmp_path / "rd.png")
    assert (tmp_path / "rd.png").stat().st_size > 1000
