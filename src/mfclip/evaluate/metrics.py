"""Binary detection metrics in pure numpy (float64), matching scikit-learn's definitions.

Convention: label 1 = fake (the positive class), label 0 = real, and a higher score means
"more likely fake". These are the metrics DeepfakeBench reports (frame AUC, AP, EER, ACC and
video AUC, where a video's score is the mean of its frame scores), re-implemented so that
evaluation does not depend on scikit-learn at runtime and so every edge case is explicit:

* bad input (empty, length mismatch, NaN/inf scores, labels outside {0, 1}) raises
  ``ValueError`` with a message saying what is wrong;
* single-class input makes the ranking metrics (AUC, AP, EER) undefined: they return ``nan``
  instead of raising, because a per-subset breakdown can legitimately contain such a subset
  and one empty cell must not abort a whole evaluation run.

Decision thresholds (``threshold_for_best_accuracy``, ``threshold_at_eer``) must be fixed on
VALIDATION data and then applied unchanged to the test set; choosing them on the test set
inflates accuracy and is one of the most common reproducibility complaints in this field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "accuracy",
    "average_precision",
    "balanced_accuracy",
    "bootstrap_ci",
    "breakdown",
    "eer",
    "pr_curve",
    "roc_auc",
    "roc_curve",
    "summarize",
    "threshold_at_eer",
    "threshold_for_best_accuracy",
    "video_scores",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
MetricFn = Callable[[IntArray, FloatArray], float]


# --------------------------------------------------------------------------- validation


def _check(labels: ArrayLike, scores: ArrayLike) -> tuple[IntArray, FloatArray]:
    """Validate and convert to (int64 labels in {0,1}, finite float64 scores), both 1-D."""
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


def _both_classes(y: IntArray) -> bool:
    """True when both real and fake samples are present (ranking metrics are defined)."""
    n_pos = int(y.sum())
    return 0 < n_pos < y.shape[0]


def _clf_curve(y: IntArray, s: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Cumulative (fps, tps, thresholds) at each distinct score, highest threshold first."""
    order = np.argsort(s, kind="mergesort")[::-1]
    s_sorted = s[order]
    y_sorted = y[order]
    # Index of the last occurrence of every distinct score value in the descending order.
    distinct = np.flatnonzero(np.diff(s_sorted))
    last = np.r_[distinct, y_sorted.shape[0] - 1]
    tps = np.cumsum(y_sorted, dtype=np.float64)[last]
    fps = (last + 1.0) - tps
    return fps, tps, s_sorted[last]


# --------------------------------------------------------------------------- ranking metrics


def roc_curve(
    labels: ArrayLike, scores: ArrayLike, *, drop_intermediate: bool = False
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """ROC curve ``(fpr, tpr, thresholds)`` as in ``sklearn.metrics.roc_curve``.

    One point per distinct score (``drop_intermediate=False`` by default, so the full curve is
    kept for exact EER interpolation), preceded by the point (0, 0) at threshold ``inf``.
    With a single class the undefined rate (fpr without reals, tpr without fakes) is all NaN.
    """
    y, s = _check(labels, scores)
    fps, tps, thr = _clf_curve(y, s)
    if drop_intermediate and fps.shape[0] > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps = np.r_[0.0, fps]
    tps = np.r_[0.0, tps]
    thr = np.r_[np.inf, thr]
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
    return fpr, tpr, thr


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic with average ranks for ties.

    Equal to ``sklearn.metrics.roc_auc_score``; ``nan`` when only one class is present
    (the AUC is undefined without both reals and fakes).
    """
    y, s = _check(labels, scores)
    return _auc(y, s)


def _auc(y: IntArray, s: FloatArray) -> float:
    if not _both_classes(y):
        return math.nan
    # Average ranks (1-based): a tie group occupying positions [a, b) gets rank (a + b + 1) / 2.
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts, dtype=np.float64)
    avg_rank = ends - (counts - 1) / 2.0
    n_pos = float(y.sum())
    n_neg = float(y.shape[0]) - n_pos
    rank_sum = float(avg_rank[inverse.ravel()][y == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def pr_curve(
    labels: ArrayLike, scores: ArrayLike, *, drop_intermediate: bool = False
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Precision-recall curve ``(precision, recall, thresholds)`` as in scikit-learn >= 1.5.

    Recall is decreasing; the last point is (precision 1, recall 0) with no threshold, so
    ``thresholds`` is one shorter. Without fakes, recall is undefined and returned as NaN.
    """
    y, s = _check(labels, scores)
    fps, tps, thr = _clf_curve(y, s)
    if drop_intermediate and fps.shape[0] > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(tps[:-1]), np.diff(tps[1:])), True])
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    precision = tps / (tps + fps)
    recall = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thr[::-1].copy()


def average_precision(labels: ArrayLike, scores: ArrayLike) -> float:
    """Average precision ``sum_n (R_n - R_{n-1}) P_n`` (step-wise, no interpolation).

    Same definition as ``sklearn.metrics.average_precision_score``. Returns ``nan`` for
    single-class input: without fakes it is undefined, and with only fakes it is trivially 1
    and carries no information, so both are reported as missing rather than as a number.
    """
    y, s = _check(labels, scores)
    return _ap(y, s)


def _ap(y: IntArray, s: FloatArray) -> float:
    if not _both_classes(y):
        return math.nan
    fps, tps, _ = _clf_curve(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def eer(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """Equal error rate and the score threshold at which it occurs: ``(eer, threshold)``.

    The ROC is walked from the strictest threshold; at the first operating point where the
    miss rate FNR = 1 - TPR is no longer above FPR, the crossing FPR = FNR is found by linear
    interpolation with the previous point (exact when a point lies on the diagonal). The
    threshold is interpolated the same way between the two operating points' thresholds (when
    the previous point is the artificial ``inf`` one, the finite threshold is used). Returns
    ``(nan, nan)`` for single-class input.
    """
    y, s = _check(labels, scores)
    return _eer(y, s)


def _eer(y: IntArray, s: FloatArray) -> tuple[float, float]:
    if not _both_classes(y):
        return math.nan, math.nan
    fps, tps, thr = _clf_curve(y, s)
    fpr = np.r_[0.0, fps / fps[-1]]
    fnr = 1.0 - np.r_[0.0, tps / tps[-1]]
    thr = np.r_[np.inf, thr]
    gap = fnr - fpr  # non-increasing: +1 at the start, -1 at the end
    i = int(np.argmax(gap <= 0.0))
    if gap[i] == 0.0:
        return float(fpr[i]), float(thr[i])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    rate = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    threshold = thr[i] if np.isinf(thr[i - 1]) else thr[i - 1] + t * (thr[i] - thr[i - 1])
    return float(rate), float(threshold)


# --------------------------------------------------------------------------- threshold metrics


def accuracy(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> float:
    """Fraction of correct decisions, predicting fake when ``score >= threshold``."""
    y, s = _check(labels, scores)
    return float(np.mean((s >= threshold) == (y == 1)))


def balanced_accuracy(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> float:
    """Mean per-class recall (TPR and TNR) at ``score >= threshold``; robust to imbalance.

    Like ``sklearn.metrics.balanced_accuracy_score``, only classes present in ``labels`` are
    averaged, so single-class input gives that class's recall.
    """
    y, s = _check(labels, scores)
    pred = s >= threshold
    recalls = [float(np.mean(pred[y == c] == bool(c))) for c in (0, 1) if np.any(y == c)]
    return float(np.mean(recalls))


def threshold_for_best_accuracy(labels: ArrayLike, scores: ArrayLike) -> float:
    """Threshold maximising accuracy on these (VALIDATION) data, for use on the test set.

    Candidates are midway between consecutive distinct scores, plus one below all scores
    (everything fake) and one above (everything real), so the returned value separates the
    data exactly as the optimum does and generalises better than a value sitting on a
    sample's score. Ties go to the highest threshold (fewest samples flagged as fake).
    """
    y, s = _check(labels, scores)
    fps, tps, thr = _clf_curve(y, s)
    n_neg = float(y.shape[0]) - float(y.sum())
    # Candidate k flags the k distinct highest score values as fake (k = 0: nothing).
    correct = np.r_[n_neg, tps + (n_neg - fps)]
    k = int(np.argmax(correct))
    if k == 0:
        return float(np.nextafter(thr[0], np.inf))
    upper = thr[k - 1]
    if k == thr.shape[0]:
        return float(upper)
    lower = thr[k]
    mid = lower + (upper - lower) / 2.0
    return float(mid if lower < mid <= upper else upper)


def threshold_at_eer(labels: ArrayLike, scores: ArrayLike) -> float:
    """Score threshold at the equal error rate of these (VALIDATION) data; see :func:`eer`."""
    return eer(labels, scores)[1]


# --------------------------------------------------------------------------- video level


def _group_index(groups: Sequence[Hashable] | ArrayLike, n: int) -> tuple[list[Any], IntArray]:
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
    y, s = _check(labels, scores)
    ids, codes = _group_index(groups, y.shape[0])
    n_groups = len(ids)
    counts = np.bincount(codes, minlength=n_groups)
    n_fake = np.bincount(codes, weights=y, minlength=n_groups)
    mixed = (n_fake > 0) & (n_fake < counts)
    if mixed.any():
        bad = [ids[i] for i in np.flatnonzero(mixed)[:5]]
        raise ValueError(f"groups with both real and fake frames: {bad}")
    means = np.bincount(codes, weights=s, minlength=n_groups) / counts
    return ids, (n_fake > 0).astype(np.int64), means


# --------------------------------------------------------------------------- bootstrap


class _Resampler:
    """Draws stratified bootstrap resamples, by sample or by whole group (cluster bootstrap).

    Reals and fakes are resampled separately with their original counts, so every resample
    has both classes and the ranking metrics stay defined. A resample is a multiset of
    "units" (samples, or groups); it can be expanded to sample indices (for any metric
    function) or to per-sample multiplicities (for the sort-free fast path in ``summarize``).
    Both views come from the same random draws, so they give identical statistics.
    """

    def __init__(self, y: IntArray, groups: Sequence[Hashable] | ArrayLike | None) -> None:
        n = y.shape[0]
        if groups is None:
            self.codes = np.arange(n)
            unit_label = y
        else:
            ids, self.codes = _group_index(groups, n)
            counts = np.bincount(self.codes, minlength=len(ids))
            n_fake = np.bincount(self.codes, weights=y, minlength=len(ids))
            if ((n_fake > 0) & (n_fake < counts)).any():
                raise ValueError("cannot bootstrap by group: some groups have mixed labels")
            unit_label = (n_fake > 0).astype(np.int64)
            # Frames sorted by group, so a group's frames are order[start : start + count].
            self.order = np.argsort(self.codes, kind="mergesort")
            self.counts = counts
            self.starts = np.r_[0, np.cumsum(counts)[:-1]]
        self.grouped = groups is not None
        self.n_units = unit_label.shape[0]
        self.units = [np.flatnonzero(unit_label == c) for c in (0, 1)]

    def pick(self, rng: np.random.Generator) -> IntArray:
        """Unit ids of one stratified resample (with replacement)."""
        return np.concatenate(
            [rng.choice(u, size=u.shape[0], replace=True) for u in self.units if u.size]
        )

    def indices(self, picked: IntArray) -> IntArray:
        """Sample indices of a resample (a group's frames repeated as often as it was drawn)."""
        if not self.grouped:
            return picked
        lengths = self.counts[picked]
        offsets = np.repeat(self.starts[picked] - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
        return self.order[offsets + np.arange(int(lengths.sum()))]

    def weights(self, picked: IntArray) -> FloatArray:
        """How many times each sample occurs in the resample."""
        return np.bincount(picked, minlength=self.n_units).astype(np.float64)[self.codes]


def _percentile_ci(values: FloatArray, alpha: float) -> tuple[float, float]:
    if np.isnan(values).all():
        return math.nan, math.nan
    lo, hi = np.nanquantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def _check_bootstrap_args(n: int, alpha: float) -> None:
    if n < 1:
        raise ValueError(f"number of bootstrap resamples must be >= 1, got {n}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


class _WeightedCurve:
    """AUC/AP/EER/accuracy of a fixed sample under per-sample weights, without re-sorting.

    Scores are sorted once; a bootstrap resample is then just a weight vector, and the ROC
    counts are weighted cumulative sums (O(N) per resample instead of O(N log N) per metric).
    AUC is the trapezoid area of the tie-collapsed ROC, which equals the Mann-Whitney
    statistic with average ranks.
    """

    def __init__(self, y: IntArray, s: FloatArray, thresholds: Mapping[str, float]) -> None:
        self.order = np.argsort(s, kind="mergesort")[::-1]
        s_sorted = s[self.order]
        self.y_sorted = y[self.order].astype(np.float64)
        self.last = np.r_[np.flatnonzero(np.diff(s_sorted)), s.shape[0] - 1]
        self.correct = {k: ((s >= t) == (y == 1)).astype(np.float64) for k, t in thresholds.items()}

    def stats(self, w: FloatArray) -> dict[str, float]:
        ws = w[self.order]
        tps = np.cumsum(ws * self.y_sorted)[self.last]
        fps = np.cumsum(ws)[self.last] - tps
        fpr = np.r_[0.0, fps / fps[-1]]
        tpr = np.r_[0.0, tps / tps[-1]]
        auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)
        predicted = tps + fps
        precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted > 0)
        ap = float(np.sum(np.diff(tpr) * precision))
        gap = (1.0 - tpr) - fpr
        i = int(np.argmax(gap <= 0.0))
        if gap[i] == 0.0:
            rate = float(fpr[i])
        else:
            t = gap[i - 1] / (gap[i - 1] - gap[i])
            rate = float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))
        out = {"auc": auc, "ap": ap, "eer": rate}
        total = float(w.sum())
        for k, c in self.correct.items():
            out[k] = float(np.sum(w * c) / total)  # not np.dot: BLAS call overhead dominates
        return out


def bootstrap_ci(
    metric_fn: MetricFn,
    labels: ArrayLike,
    scores: ArrayLike,
    n: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: Sequence[Hashable] | ArrayLike | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` confidence interval of ``metric_fn(labels, scores)``.

    Resampling is stratified by label (each resample keeps the numbers of reals and fakes), so
    AUC-type metrics are always defined. With ``groups`` (e.g. video ids) whole groups are
    resampled instead of frames, because frames of one video are strongly correlated and
    frame-level resampling would give intervals that are too narrow. Deterministic for a
    given ``seed``. Single-class input gives ``(nan, nan)``.
    """
    y, s = _check(labels, scores)
    _check_bootstrap_args(n, alpha)
    sampler = _Resampler(y, groups)
    if not _both_classes(y):
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    values = np.empty(n)
    for b in range(n):
        idx = sampler.indices(sampler.pick(rng))
        values[b] = metric_fn(y[idx], s[idx])
    return _percentile_ci(values, alpha)


# --------------------------------------------------------------------------- summaries


def _acc(y: IntArray, s: FloatArray, thr: float) -> float:
    return float(np.mean((s >= thr) == (y == 1)))


def _bacc(y: IntArray, s: FloatArray, thr: float) -> float:
    pred = s >= thr
    recalls = [float(np.mean(pred[y == c] == bool(c))) for c in (0, 1) if np.any(y == c)]
    return float(np.mean(recalls))


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

    Keys: ``n, n_real, n_fake, auc, ap, eer, eer_threshold, acc@0.5, balanced_acc@0.5``; with
    ``threshold`` (fixed beforehand on validation data) also ``threshold, acc@thr,
    balanced_acc@thr``; with ``groups`` also ``n_videos, video_auc``. When ``bootstrap > 0``,
    ``<key>_ci`` = (low, high) percentile intervals are added for auc, ap, eer, acc@0.5,
    acc@thr and video_auc (frame metrics resample whole groups when groups are given).
    """
    y, s = _check(labels, scores)
    n_fake = int(y.sum())
    eer_value, eer_thr = _eer(y, s)
    out: dict[str, Any] = {
        "n": int(y.shape[0]),
        "n_real": int(y.shape[0]) - n_fake,
        "n_fake": n_fake,
        "auc": _auc(y, s),
        "ap": _ap(y, s),
        "eer": eer_value,
        "eer_threshold": eer_thr,
        "acc@0.5": _acc(y, s, 0.5),
        "balanced_acc@0.5": _bacc(y, s, 0.5),
    }
    thresholds = {"acc@0.5": 0.5}
    if threshold is not None:
        thr = float(threshold)
        thresholds["acc@thr"] = thr
        out["threshold"] = thr
        out["acc@thr"] = _acc(y, s, thr)
        out["balanced_acc@thr"] = _bacc(y, s, thr)
    if groups is not None:
        _, vy, vs = video_scores(groups, y, s)
        out["n_videos"] = int(vy.shape[0])
        out["video_auc"] = _auc(vy, vs)
    if bootstrap > 0:
        _check_bootstrap_args(bootstrap, alpha)
        keys = ["auc", "ap", "eer", *thresholds]
        sampler = _Resampler(y, groups)
        if _both_classes(y):
            curve = _WeightedCurve(y, s, thresholds)
            rng = np.random.default_rng(seed)
            table = np.empty((bootstrap, len(keys)))
            for b in range(bootstrap):
                stats = curve.stats(sampler.weights(sampler.pick(rng)))
                table[b] = [stats[k] for k in keys]
            for j, k in enumerate(keys):
                out[f"{k}_ci"] = _percentile_ci(table[:, j], alpha)
        else:
            out.update({f"{k}_ci": (math.nan, math.nan) for k in keys})
        if groups is not None:
            out["video_auc_ci"] = bootstrap_ci(roc_auc, vy, vs, bootstrap, alpha, seed)
    return out


def _columns(records: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]]) -> dict[str, list]:
    """Normalise a list of row dicts or a dict of equal-length columns to a dict of lists."""
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
    cols = _columns(records)
    for key in ("label", "score", by, *([group_key] if group_key else [])):
        if key not in cols:
            raise ValueError(f"records have no column {key!r} (columns: {sorted(cols)})")
    y, s = _check(cols["label"], cols["score"])
    values = cols[by]
    groups = cols[group_key] if group_key else None
    fake_values = {values[i] for i in np.flatnonzero(y == 1)}
    if None in fake_values:
        raise ValueError(f"some fake records have no {by!r} value")
    if overall is not None and overall in fake_values:
        raise ValueError(f"a {by!r} value is named {overall!r}; pass another overall= name")
    is_real = y == 0
    kw: dict[str, Any] = {"threshold": threshold, "bootstrap": bootstrap, "seed": seed}

    def _subset(mask: NDArray[np.bool_]) -> dict[str, Any]:
        idx = np.flatnonzero(mask)
        g = [groups[i] for i in idx] if groups is not None else None
        return summarize(y[idx], s[idx], groups=g, **kw)

    out: dict[str, dict[str, Any]] = {}
    if overall is not None:
        out[overall] = _subset(np.ones_like(is_real))
    for v in sorted(fake_values, key=str):
        matches = np.fromiter((x == v for x in values), dtype=bool, count=len(values))
        out[str(v)] = _subset(is_real | ((y == 1) & matches))
    return out
