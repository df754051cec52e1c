"""One evaluation set, or one subset per generator, summarised as flat JSON-friendly dicts.

These are the numbers DeepfakeBench reports (frame AUC, AP, EER, ACC and video AUC, where a
video's score is the mean of its frame scores), with bootstrap intervals, in the shape the
report writer and the trainer consume; plus the rates a user deploys by: the share of fakes
caught when only 0.1 %, 1 % or 5 % of real images may be flagged, the share of reals flagged
when 95 % of fakes must be caught, and both rates at the model's stored threshold.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .bootstrap import check_bootstrap_args, curve_cis
from .grouping import to_columns, video_scores
from .operating import fpr_at_tpr, rates_at, tpr_at_fpr
from .ranking import average_precision, eer, roc_auc
from .thresholds import accuracy, balanced_accuracy
from .validation import check_binary

__all__ = ["TARGET_FPRS", "TARGET_TPRS", "breakdown", "subset_masks", "summarize"]

#: False positive rates at which ``tpr@fpr=X`` is reported, and true positive rates for
#: ``fpr@tpr=X``.
TARGET_FPRS = (0.001, 0.01, 0.05)
TARGET_TPRS = (0.95,)


def summarize(
    labels: ArrayLike,
    scores: ArrayLike,
    threshold: float | None = None,
    groups: Sequence[Hashable] | ArrayLike | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """All standard metrics for one evaluation set, as a flat JSON-friendly dict.

    Keys: ``n, n_real, n_fake, auc, ap, eer, eer_threshold, acc@0.5, balanced_acc@0.5``,
    ``tpr@fpr=0.001``, ``tpr@fpr=0.01``, ``tpr@fpr=0.05`` and ``fpr@tpr=0.95`` (NaN for one
    class); with ``threshold`` (fixed beforehand on validation data) also ``threshold, acc@thr,
    balanced_acc@thr, fpr@thr, tpr@thr``; with ``groups`` also ``n_videos, video_auc``. When
    ``bootstrap > 0``, ``<key>_ci`` = (low, high) percentile intervals are added for auc, ap,
    eer, acc@0.5, acc@thr and video_auc (frame metrics resample whole groups when groups are given).
    """
    y, s = check_binary(labels, scores)
    n_fake = int(y.sum())
    eer_value, eer_thr = eer(y, s)
    out: dict[str, Any] = {
        "n": int(y.shape[0]),
        "n_real": int(y.shape[0]) - n_fake,
        "n_fake": n_fake,
        "auc": roc_auc(y, s),
        "ap": average_precision(y, s),
        "eer": eer_value,
        "eer_threshold": eer_thr,
        "acc@0.5": accuracy(y, s, 0.5),
        "balanced_acc@0.5": balanced_accuracy(y, s, 0.5),
    }
    out.update({f"tpr@fpr={f:g}": tpr_at_fpr(y, s, f) for f in TARGET_FPRS})
    out.update({f"fpr@tpr={t:g}": fpr_at_tpr(y, s, t) for t in TARGET_TPRS})
    thresholds = {"acc@0.5": 0.5}
    if threshold is not None:
        thr = float(threshold)
        thresholds["acc@thr"] = thr
        out["threshold"] = thr
        out["acc@thr"] = accuracy(y, s, thr)
        out["balanced_acc@thr"] = balanced_accuracy(y, s, thr)
        out["fpr@thr"], out["tpr@thr"] = rates_at(y, s, thr)
    if groups is not None:
        _, vy, vs = video_scores(groups, y, s)
        out["n_videos"] = int(vy.shape[0])
        out["video_auc"] = roc_auc(vy, vs)
    if bootstrap > 0:
        check_bootstrap_args(bootstrap, alpha)
        cis = curve_cis(y, s, thresholds, bootstrap, alpha, seed, groups)
        out.update({f"{k}_ci": v for k, v in cis.items()})
        if groups is not None:
            out["video_auc_ci"] = curve_cis(vy, vs, {}, bootstrap, alpha, seed)["auc"]
    return out


def breakdown(
    records: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]],
    by: str,
    *,
    threshold: float | None = None,
    group_key: str | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    overall: str | None = "all",
) -> dict[str, dict[str, Any]]:
    """:func:`summarize` per value of column ``by`` (e.g. generator, forgery_type, subset).

    Standard per-generator protocol: subset ``v`` = the fakes (label 1) whose ``by`` equals
    ``v`` plus ALL reals (label 0), whatever their ``by`` value, so every subset's AUC measures
    how well that generator's fakes are separated from the same pool of real images. ``records``
    need ``label`` and ``score`` columns; ``group_key`` names a video-id column for video AUC
    and grouped bootstrap. With ``overall`` set, a row of that name summarises all records.
    Subsets are returned sorted by name, after the overall row.
    """
    cols = to_columns(records)
    for key in ("label", "score", by, *([group_key] if group_key else [])):
        if key not in cols:
            raise ValueError(f"records have no column {key!r} (columns: {sorted(cols)})")
    y, s = check_binary(cols["label"], cols["score"])
    values = cols[by]
    groups = cols[group_key] if group_key else None
    kw: dict[str, Any] = {"threshold": threshold, "bootstrap": bootstrap, "seed": seed}

    def _subset(mask: NDArray[np.bool_]) -> dict[str, Any]:
        idx = np.flatnonzero(mask)
        g = [groups[i] for i in idx] if groups is not None else None
        return summarize(y[idx], s[idx], groups=g, **kw)

    return {name: _subset(mask) for name, mask in subset_masks(y, values, by, overall).items()}


def subset_masks(
    labels: NDArray[np.int64], values: Sequence[Any], by: str, overall: str | None = "all"
) -> dict[str, NDArray[np.bool_]]:
    """The per-generator protocol's subsets as masks: ``v`` = the fakes whose ``by`` is ``v``
    plus ALL reals, sorted by name, after ``overall`` (every record) when it is given.

    The one definition of the subsets, shared by :func:`breakdown` and every report that
    cuts a set the same way.
    """
    fake_values = {values[i] for i in np.flatnonzero(labels == 1)}
    if None in fake_values:
        raise ValueError(f"some fake records have no {by!r} value")
    if overall is not None and overall in fake_values:
        raise ValueError(f"a {by!r} value is named {overall!r}; pass another overall= name")
    is_real = labels == 0
    out: dict[str, NDArray[np.bool_]] = {}
    if overall is not None:
        out[overall] = np.ones_like(is_real)
    for v in sorted(fake_values, key=str):
        matches = np.fromiter((x == v for x in values), dtype=bool, count=len(values))
        out[str(v)] = is_real | ((labels == 1) & matches)
    return out
