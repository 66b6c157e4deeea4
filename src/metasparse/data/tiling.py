"""How patches tile an image, without torch: the codec's file format counts patches with it too."""

from __future__ import annotations

__all__ = ["patch_grid"]


def patch_grid(height: int, width: int, patch: int = 32) -> tuple[tuple[int, int], tuple[int, int]]:
    """((rows, cols), (padded_height, padded_width)) for an image of that size: edge patches are padded,
    hence the ceiling."""
    if int(patch) < 1:
        raise ValueError(f"patch size must be >= 1, got {patch}")
    patch = int(patch)
    rows, cols = -(-int(height) // patch), -(-int(width) // patch)
    return (rows, cols), (rows * patch, cols * patch)
