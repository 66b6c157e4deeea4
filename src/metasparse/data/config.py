"""Where a run's signals come from: the ``data`` and ``val_data`` sections of a run configuration.

It lives in the data layer so that loaders can take it without importing the run configuration
(``metasparse.config`` re-exports it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataConfig:
    """Where signals come from. ``path``: a folder, file, ``.npz``, or ``samples`` (the photos that
    scikit-image ships). ``patch``: train on random ``patch`` x ``patch`` crops instead of whole
    images (a fresh draw for every batch, from the run's seed). ``extra_paths``: more folders or files
    of images loaded with ``path`` (images only), under the same ``split`` and ``limit``: a split sees
    each image's name relative to its own folder, so a folder split the same way alone or in a mix
    keeps the same held-out images."""

    path: str = "samples"
    transform: str | None = None
    split: str | None = None
    limit: int | None = None
    patch: int | None = None
    modality: str = "image"
    extra_paths: tuple[str, ...] = ()

    @property
    def sources(self) -> str | list[str]:
        """What the image loaders take: ``path`` alone, or it and ``extra_paths``."""
        return [self.path, *self.extra_paths] if self.extra_paths else self.path
