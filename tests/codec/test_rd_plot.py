"""The rate-distortion plot's axis range: every codec must be visible, even on tiny images."""

from pathlib import Path

from metasparse.codec.rd import _x_limit, plot


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
