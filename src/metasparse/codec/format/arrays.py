"""Arrays in, arrays out: how the format layer reads the values it is given, without torch.

The format layer computes with numpy only. A caller may still hand it a tensor: anything with
``.detach()`` is detached, copied to the CPU and read through ``np.asarray``; results are numpy
arrays, which the caller turns back with ``torch.from_numpy`` where it needs tensors.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_array(values: Any) -> np.ndarray:
    """``values`` as a numpy array (its dtype kept: a float32 tensor gives a float32 array); a tensor
    (anything with ``.detach()``) is detached and copied to the CPU first."""
    if hasattr(values, "detach"):
        values = values.detach().cpu()
    return np.asarray(values)
