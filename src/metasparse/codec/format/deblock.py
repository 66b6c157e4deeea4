"""The decoder's deblocking filter: patch borders smoothed where the step across them is a seam.

Every patch is fitted on its own, so neighbouring patches disagree along their common border and a
decoded image shows the patch grid. For each border (vertical ones first, then horizontal ones,
each pass rounded to uint8) and each pixel position along it:

    d  = q0 - p0                      the step across the border (p: before it, q: after it)
    ds = (d[-1] + 2 d + d[+1]) / 4    the step smoothed along the border, so noise is not spread
    a  = |p0 - p1| + |q1 - q0|        activity next to the border
    if |ds| < T and a < T:            a seam, not an edge of the picture
        p_i += ds * (n - i) / (2 n),  q_i -= ds * (n - i) / (2 n)     for i = 0 .. n-1

so that the step is spread over ``n`` pixels (``span``) on each side as a ramp, and the two border
pixels meet halfway. ``T`` (``threshold``, in 8-bit levels) and ``n`` are a quality level's
settings, chosen by ``codec-build`` on training images; they are part of the model (its id), so the
encoder's reported pixels are exactly the decoder's.

numpy only, float32 elementwise arithmetic and one rounding per pass: the same pixels on every
machine. It works one border strip at a time (``2 n + 2`` rows or columns), so a large image is never
copied whole in floating point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_THRESHOLD = 255.0


@dataclass(frozen=True)
class Deblocking:
    """A quality level's filter: ``threshold`` (8-bit levels) and ``span`` (pixels each side)."""

    threshold: float
    span: int

    def __post_init__(self) -> None:
        if isinstance(self.span, bool) or not isinstance(self.span, (int, np.integer)) or self.span < 1:
            raise ValueError(f"deblocking span must be an integer >= 1, got {self.span!r}")
        if not (np.isfinite(self.threshold) and 0 < self.threshold <= MAX_THRESHOLD):
            raise ValueError(f"deblocking threshold must be in (0, {MAX_THRESHOLD:g}], got {self.threshold!r}")
        object.__setattr__(self, "span", int(self.span))
        object.__setattr__(self, "threshold", float(np.float32(self.threshold)))

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "span": self.span}

    @classmethod
    def from_dict(cls, d) -> Deblocking:
        if not isinstance(d, dict) or set(d) != {"threshold", "span"}:
            raise ValueError(f"invalid deblocking settings {d!r}")
        return cls(threshold=float(d["threshold"]), span=d["span"])


def deblock(image: np.ndarray, patch: int, settings: Deblocking) -> np.ndarray:
    """Filter the patch borders of ``image`` (uint8, (H, W, C), patches of ``patch`` pixels from the
    top-left corner) in place, and return it."""
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected a uint8 (H, W, C) image, got {image.dtype} {image.shape}")
    if patch < 2:
        return image
    # Vertical borders (between columns of patches), then horizontal ones, on the rows/columns axis 0 of a view.
    _filter_borders(np.swapaxes(image, 0, 1), patch, settings)
    _filter_borders(image, patch, settings)
    return image


def _filter_borders(view: np.ndarray, patch: int, settings: Deblocking) -> None:
    """Filter the borders that cross axis 0 of ``view`` (a view of the image: writes go to it)."""
    length = view.shape[0]
    threshold = np.float32(settings.threshold)
    for border in range(patch, length, patch):
        # A border near the image's end (a cropped last patch) is filtered over the pixels it has.
        n = min(settings.span, border, length - border)
        lo, hi = border - n, border + n
        strip = view[max(lo - 1, 0):min(hi + 1, length)].astype(np.float32)
        p0 = border - 1 - max(lo - 1, 0)  # index of p0 in the strip
        q0 = p0 + 1
        step = strip[q0] - strip[p0]
        smoothed = step.copy()
        if step.shape[0] > 2:
            smoothed[1:-1] = (step[:-2] + np.float32(2) * step[1:-1] + step[2:]) * np.float32(0.25)
        p1 = strip[p0 - 1] if p0 >= 1 else strip[p0]
        q1 = strip[q0 + 1] if q0 + 1 < strip.shape[0] else strip[q0]
        activity = np.abs(strip[p0] - p1) + np.abs(q1 - strip[q0])
        seam = (np.abs(smoothed) < threshold) & (activity < threshold)
        shift = np.where(seam, smoothed, np.float32(0))
        for i in range(n):
            weight = np.float32((n - i) / (2 * n))
            strip[p0 - i] += shift * weight
            strip[q0 + i] -= shift * weight
        rows = slice(p0 - n + 1, q0 + n)
        view[lo:hi] = np.clip(np.floor(strip[rows] + np.float32(0.5)), 0, 255).astype(np.uint8)


__all__ = ["MAX_THRESHOLD", "Deblocking", "deblock"]
