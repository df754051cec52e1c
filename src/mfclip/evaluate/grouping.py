"""Grouping of per-frame results: video-level scores and tabular records to columns.

Frames of one video are not independent, so video-level metrics and the grouped bootstrap
need the frames mapped to their video; records from the evaluation runner arrive either as
row dicts or as columns, and every consumer wants columns.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .validation import FloatArray, IntArray, check_binary

__all__ = ["group_index", "to_columns", "video_scores"]


def group_index(groups: Sequence[Hashable] | ArrayLike, n: int) -> tuple[list[Any], IntArray]:
    """Map group ids to 0..G-1 in order of first appearance (works for any hashable ids)."""
    ids = groups.tolist() if isinstance(groups, np.ndarray) else list(groups)  # type: ignore[union-attr]
    if len(ids) != n:
        raise ValueError(f"groups has length {len(ids)} but there are {n} scores")
    index: dict[Any, int] = {}
    codes = np.fromiter((index.setdefault(g, len(index)) for g in ids), np.int64, count=n)
    return list(index), codes


def video_scores(
    groups: Sequence[Hashable] | ArrayLike, labels: ArrayLike, scores: ArrayLike
) -> tuple[list[Any], IntArray, FloatArray]:
    """Per-group (video) ``(ids, labels, mean scores)``, in order of first appearance.

    This is DeepfakeBench's video-level protocol: a video's score is the mean of its frame
    scores. A group whose frames carry both labels is a data error and raises ``ValueError``.
    """
    y, s = check_binary(labels, scores)
    ids, codes = group_index(groups, y.shape[0])
    n_groups = len(ids)
    counts = np.bincount(codes, minlength=n_groups)
    n_fake = np.bincount(codes, weights=y, minlength=n_groups)
    mixed = (n_fake > 0) & (n_fake < counts)
    if mixed.any():
        bad = [ids[i] for i in np.flatnonzero(mixed)[:5]]
        raise ValueError(f"groups with both real and fake frames: {bad}")
    means = np.bincount(codes, weights=s, minlength=n_groups) / counts
    return ids, (n_fake > 0).astype(np.int64), means


def to_columns(
    records: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]],
) -> dict[str, list[Any]]:
    """Normalise a list of row dicts or a dict of equal-length columns to a dict of lists.

    Rows may lack keys other rows have; the missing cells become ``None``.
    """
    if isinstance(records, Mapping):
        cols = {str(k): list(v) for k, v in records.items()}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns have different lengths: {sorted(lengths)}")
        return cols
    rows = list(records)
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    return {k: [row.get(k) for row in rows] for k in keys}
