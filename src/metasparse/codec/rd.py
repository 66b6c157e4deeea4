"""Rate-distortion evaluation: our codec and classical codecs on the same images, real bytes only."""

from __future__ import annotations

import csv
import io
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from metasparse.codec import baselines
from metasparse.codec.format.bitstream import unpack
from metasparse.data.images import load_image_list
from metasparse.errors import ConfigError, DataError
from metasparse.metrics import ms_ssim, psnr
from metasparse.utils.fileio import write_atomic

FIELDS = ["image", "codec", "quality", "bytes", "bpp", "payload_bpp", "psnr", "ms_ssim", "encode_s", "decode_s"]


def check_codec_names(names) -> None:
    """Refuse a classical codec this module does not know (installed or not), naming the known ones."""
    unknown = [name for name in names if name not in baselines.CODEC_NAMES]
    if unknown:
        raise ConfigError(f"unknown codec(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(baselines.CODEC_NAMES)}")


def run_rd(codec, data, output: Path, split=None, limit=None, codecs=(), log=lambda s: None,
           label: str | None = None) -> list[dict]:
    """Every quality of ``codec`` and of each classical codec on every image; writes CSVs and a plot.

    ``data``: a folder, an image file, an ``.npz``, or a list of image files. An unknown codec name
    is refused before any work; a known one that is not installed here is skipped with a note.
    """
    check_codec_names(codecs)
    label = label or (Path(data).name if isinstance(data, (str, Path)) else f"{len(data)} files")
    tensors, names = load_image_list(data, split=split, limit=limit)
    if not tensors:
        raise DataError(f"no images in {data}")
    images = [t.numpy() for t in tensors]
    pixels = [im.shape[0] * im.shape[1] for im in images]
    rows: list[dict] = []
    for quality in range(1, codec.num_qualities + 1):
        t0 = time.perf_counter()
        results = codec.compress_images(images, quality)
        encode_s = (time.perf_counter() - t0) / len(images)
        for name, image, result, n in zip(names, images, results, pixels):
            t1 = time.perf_counter()
            decoded = codec.decompress(result.data)
            decode_s = time.perf_counter() - t1
            if not np.array_equal(decoded, result.reconstruction):
                raise RuntimeError(f"{name}: decoder output differs from the encoder's reconstruction")
            row = _row(name, "metasparse", quality, len(result.data), n, image, decoded, encode_s, decode_s)
            # What the entropy-coded modulations alone cost: the rate COIN++ and MSCN report, which on
            # small images (CIFAR-10: 25 container bytes = 0.20 bpp) differs from the file's.
            row["payload_bpp"] = 8.0 * len(unpack(result.data)[1]) / n
            rows.append(row)
        log(f"metasparse quality {quality}: {_mean(rows, 'metasparse', quality)}")
    missing = baselines.unavailable_codecs()
    for name in codecs:
        if name in missing:
            log(f"skipping {name}: {missing[name]}")
            continue
        for quality in baselines.default_qualities(name):
            for image_name, image, n in zip(names, images, pixels):
                t0 = time.perf_counter()
                decoded, size = baselines.encode_decode(name, image, quality)
                seconds = time.perf_counter() - t0
                rows.append(_row(image_name, name, quality, size, n, image, decoded, seconds, float("nan")))
        log(f"{name}: done")
    output.mkdir(parents=True, exist_ok=True)
    write_atomic(output / "rd.csv", _csv(rows, FIELDS))
    summary = summarise(rows)
    write_atomic(output / "rd_summary.csv", _csv(summary, list(summary[0])))
    write_atomic(output / "rd_summary.json", json.dumps(
        {"images": len(images), "data": label, "split": split, "summary": _strict_json(summary)}, indent=2))
    plot(summary, output / "rd.png", title=f"{label}: {len(images)} images")
    return rows


def _row(image, codec, quality, size, n_pixels, original, decoded, encode_s, decode_s) -> dict:
    return {
        "image": image, "codec": codec, "quality": quality, "bytes": size, "bpp": 8.0 * size / n_pixels,
        "payload_bpp": float("nan"),
        "psnr": psnr(original, decoded), "ms_ssim": ms_ssim(original, decoded),
        "encode_s": encode_s, "decode_s": decode_s,
    }


def _mean(rows, codec, quality) -> str:
    sel = [r for r in rows if r["codec"] == codec and r["quality"] == quality]
    return (f"{np.mean([r['bpp'] for r in sel]):.3f} bpp, {np.mean([r['psnr'] for r in sel]):.2f} dB, "
            f"MS-SSIM {np.mean([r['ms_ssim'] for r in sel]):.4f}")


def summarise(rows: list[dict]) -> list[dict]:
    """Mean bpp / PSNR / MS-SSIM / times per (codec, quality), PSNR also as mean ± std.

    An image decoded exactly (PSNR infinite, e.g. a classical codec at its top quality on a tiny
    image) is counted in ``lossless`` and left out of the PSNR mean and std, which would otherwise
    be infinite and undefined; the PSNR is infinite only when every image is lossless.
    """
    groups: dict = defaultdict(list)
    for r in rows:
        groups[(r["codec"], r["quality"])].append(r)
    summary = []
    for (name, quality), sel in groups.items():
        psnrs = np.array([r["psnr"] for r in sel], dtype=np.float64)
        lossy = psnrs[np.isfinite(psnrs)]
        summary.append({
            "codec": name, "quality": quality, "images": len(sel),
            "bpp": float(np.mean([r["bpp"] for r in sel])),
            "payload_bpp": float(np.mean([r["payload_bpp"] for r in sel])),
            "psnr": float(lossy.mean()) if len(lossy) else float("inf"),
            "psnr_std": float(lossy.std()) if len(lossy) else float("nan"),
            "lossless": int(len(sel) - len(lossy)),
            "ms_ssim": float(np.mean([r["ms_ssim"] for r in sel])),
            "encode_s": float(np.mean([r["encode_s"] for r in sel])),
            "decode_s": float(np.nanmean([r["decode_s"] for r in sel])) if name == "metasparse" else float("nan"),
        })
    return summary


def _strict_json(summary: list[dict]) -> list[dict]:
    """NaN and infinity are not JSON: they become ``null`` (``lossless`` tells why a PSNR is missing)."""
    return [{k: (v if not isinstance(v, float) or np.isfinite(v) else None) for k, v in s.items()}
            for s in summary]


def _csv(rows: list[dict], fields: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in fields})
    return buffer.getvalue()


def _x_limit(by_codec: dict) -> float:
    """Up to 2 bpp, further when needed for every codec to show its two lowest rates (tiny images,
    where the classical codecs' headers alone cost more than 2 bpp)."""
    highest = max(p["bpp"] for points in by_codec.values() for p in points)
    needed = max(sorted(p["bpp"] for p in points)[:2][-1] for points in by_codec.values())
    return min(highest, max(2.0, needed)) * 1.05


def plot(summary: list[dict], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    by_codec: dict = defaultdict(list)
    for s in summary:
        by_codec[s["codec"]].append(s)
    for name, points in by_codec.items():
        points = sorted(points, key=lambda s: s["bpp"])
        style = {"marker": "o", "linewidth": 2.5 if name == "metasparse" else 1.2}
        payload = [p for p in points if np.isfinite(p.get("payload_bpp", float("nan")))]
        for ax, key in zip(axes, ("psnr", "ms_ssim")):
            # A quality where every image came back exactly has an infinite PSNR: no point to draw.
            drawn = [p for p in points if np.isfinite(p[key])]
            payload = [p for p in payload if np.isfinite(p[key])]
            line, = ax.plot([p["bpp"] for p in drawn], [p[key] for p in drawn], label=name, **style)
            if payload:
                # The figure papers report (COIN++, MSCN): modulation bits only, no container.
                ax.plot([p["payload_bpp"] for p in payload], [p[key] for p in payload], linestyle="--",
                        marker="o", markerfacecolor="none", color=line.get_color(),
                        label=f"{name} (payload only)")
    for ax, label in zip(axes, ("PSNR (dB)", "MS-SSIM")):
        ax.set_xlabel("bits per pixel (real file sizes)")
        ax.set_ylabel(label)
        ax.set_xlim(0, _x_limit(by_codec))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


# -- a picture at equal rate -----------------------------------------------------------------------
GRID_CODECS = ("jpeg", "jpeg2000", "avif")


def at_rate(name: str, image: np.ndarray, target_bpp: float) -> tuple[np.ndarray, float]:
    """``image`` through the classical codec ``name`` at the setting whose real rate is closest to
    ``target_bpp`` from below (the lowest setting when even that is above it): (decoded, bpp)."""
    pixels = image.shape[0] * image.shape[1]
    qualities = baselines.default_qualities(name)
    if name == "jpeg2000":  # its setting is the rate itself
        decoded, size = baselines.encode_decode(name, image, target_bpp)
        return decoded, 8.0 * size / pixels
    low, high = int(min(qualities)), int(max(qualities))
    best = None
    while low <= high:  # the rate grows with the quality setting
        middle = (low + high) // 2
        decoded, size = baselines.encode_decode(name, image, middle)
        if 8.0 * size / pixels <= target_bpp:
            best = (decoded, 8.0 * size / pixels)
            low = middle + 1
        else:
            high = middle - 1
    if best is None:  # even the lowest setting is above the target
        decoded, size = baselines.encode_decode(name, image, int(min(qualities)))
        best = (decoded, 8.0 * size / pixels)
    return best


def equal_rate_grid(codec, image: np.ndarray, quality: int, path: Path, name: str = "",
                    codecs=GRID_CODECS, crop: int = 192, log=lambda s: None) -> list[dict]:
    """A figure of one image: the original, our codec at ``quality`` (and without its deblocking
    filter, where the level has one), and each available classical codec at the closest rate not
    above ours; a ``crop`` x ``crop`` window from the centre, and whole-image PSNR and bpp in each title.
    Returns the panels' rows (codec, bpp, PSNR)."""
    image = np.asarray(image)[..., :3]
    ours = codec.compress(image, quality)
    panels = [("original", image, None, None), ("metasparse", ours.reconstruction, ours.bpp, ours.psnr)]
    level = codec.level(quality)
    if getattr(level, "deblocking", None) is not None:
        plain = codec.with_deblocking([None] * codec.num_qualities).compress(image, quality)
        panels.insert(1, ("metasparse, no deblocking", plain.reconstruction, plain.bpp, plain.psnr))
    missing = baselines.unavailable_codecs()
    for other in codecs:
        if other in missing:
            log(f"grid: skipping {other}: {missing[other]}")
            continue
        decoded, bpp = at_rate(other, image, ours.bpp)
        decoded = decoded.reshape(image.shape)
        panels.append((other, decoded, bpp, psnr(image, decoded)))
    height, width = image.shape[:2]
    size_y, size_x = min(crop, height), min(crop, width)
    top, left = (height - size_y) // 2, (width - size_x) // 2
    from matplotlib.figure import Figure

    from metasparse.utils.fileio import save_figure

    figure = Figure(figsize=(2.6 * len(panels), 3.0))
    for k, (label, picture, bpp, value) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), k + 1)
        axes.imshow(picture[top:top + size_y, left:left + size_x], interpolation="nearest")
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_title(label if bpp is None else f"{label}\n{bpp:.3f} bpp, {value:.2f} dB", fontsize=8)
    figure.suptitle(f"{name} ({width}x{height}): centre {size_x}x{size_y}, rates of the whole image", fontsize=9)
    save_figure(figure, path, dpi=130)
    return [{"codec": label, "bpp": bpp, "psnr": value} for label, _, bpp, value in panels if bpp is not None]
