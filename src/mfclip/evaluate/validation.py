"""Input checks shared by every metric, so bad data fails with one clear message.

Labels are 1 = fake (the positive class) and 0 = real; a higher score means "more likely
fake". Checking here, before scikit-learn sees the data, keeps the project's own error
messages and lets single-class input return ``nan`` instead of raising.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["FloatArray", "IntArray", "both_classes", "check_binary"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def check_binary(labels: ArrayLike, scores: ArrayLike) -> tuple[IntArray, FloatArray]:
    """Validate and convert to (int64 labels in {0,1}, finite float64 scores), both 1-D.

    Raises ``ValueError`` for empty input, a length mismatch, NaN/inf scores, non-numeric
    data or labels outside {0, 1}.
    """
    y = np.asarray(labels)
    s = np.asarray(scores)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"labels and scores have different lengths ({y.shape[0]} vs {s.shape[0]})")
    if y.shape[0] == 0:
        raise ValueError("empty input: need at least one (label, score) pair")
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise ValueError(f"labels must be numeric 0/1 (1 = fake), got dtype {y.dtype}")
    if not (np.issubdtype(s.dtype, np.number) or s.dtype == np.bool_):
        raise ValueError(f"scores must be numeric, got dtype {s.dtype}")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        examples = np.unique(y[bad])[:5].tolist()
        raise ValueError(f"labels must be 0 (real) or 1 (fake); found {examples}")
    s = s.astype(np.float64)
    if not np.isfinite(s).all():
        n_nan = int(np.isnan(s).sum())
        n_inf = int(np.isinf(s).sum())
        raise ValueError(f"scores must be finite; found {n_nan} NaN and {n_inf} infinite value(s)")
    return y.astype(np.int64), s


def both_classes(y: IntArray) -> bool:
    """True when both real and fake samples are present (ranking metrics are defined)."""
    n_pos = int(y.sum())
    return 0 < n_pos < y.shape[0]
