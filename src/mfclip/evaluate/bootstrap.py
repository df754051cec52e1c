"""Stratified (and grouped) percentile-bootstrap confidence intervals.

Reals and fakes are resampled separately with their original counts, so every resample has
both classes and the ranking metrics stay defined. With groups (video ids) whole videos are
resampled, because frames of one video are strongly correlated and frame-level resampling
gives intervals that are too narrow. Two paths share the same random draws:
:func:`bootstrap_ci` runs any metric on each resample, and :func:`curve_cis` computes AUC,
AP, EER and accuracies for all resamples without re-sorting (what ``summarize`` uses).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from .grouping import group_index
from .validation import FloatArray, IntArray, both_classes, check_binary

__all__ = ["MetricFn", "bootstrap_ci", "check_bootstrap_args", "curve_cis"]

MetricFn = Callable[[IntArray, FloatArray], float]
Groups = Sequence[Hashable] | ArrayLike | None


class _Resampler:
    """Draws stratified bootstrap resamples, by sample or by whole group (cluster bootstrap).

    A resample is a multiset of "units" (samples, or groups); it can be expanded to sample
    indices (for any metric function) or to per-sample multiplicities (for the sort-free fast
    path). Both views come from the same random draws, so they give identical statistics.
    """

    def __init__(self, y: IntArray, groups: Groups) -> None:
        n = y.shape[0]
        if groups is None:
            self.codes = np.arange(n)
            unit_label = y
        else:
            ids, self.codes = group_index(groups, n)
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


class _WeightedCurve:
    """AUC/AP/EER/accuracy of a fixed sample under per-sample weights, without re-sorting.

    Scores are sorted once; a bootstrap resample is then just a weight vector, and the ROC
    counts are weighted cumulative sums (O(N) per resample instead of O(N log N) per metric).
    AUC is the trapezoid area of the tie-collapsed ROC (ties count 1/2), AP the step-wise sum
    and EER the same interpolation as :func:`mfclip.evaluate.ranking.eer`.
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


def _percentile_ci(values: FloatArray, alpha: float) -> tuple[float, float]:
    if np.isnan(values).all():
        return math.nan, math.nan
    lo, hi = np.nanquantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def check_bootstrap_args(n: int, alpha: float) -> None:
    """Reject a resample count below 1 or an ``alpha`` outside (0, 1) before any work."""
    if n < 1:
        raise ValueError(f"number of bootstrap resamples must be >= 1, got {n}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_ci(
    metric_fn: MetricFn,
    labels: ArrayLike,
    scores: ArrayLike,
    n: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: Groups = None,
) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` confidence interval of ``metric_fn(labels, scores)``.

    Resampling is stratified by label (each resample keeps the numbers of reals and fakes), so
    AUC-type metrics are always defined. With ``groups`` (e.g. video ids) whole groups are
    resampled instead of frames. Deterministic for a given ``seed``. Single-class input gives
    ``(nan, nan)``.
    """
    y, s = check_binary(labels, scores)
    check_bootstrap_args(n, alpha)
    sampler = _Resampler(y, groups)
    if not both_classes(y):
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    values = np.empty(n)
    for b in range(n):
        idx = sampler.indices(sampler.pick(rng))
        values[b] = metric_fn(y[idx], s[idx])
    return _percentile_ci(values, alpha)


def curve_cis(
    labels: ArrayLike,
    scores: ArrayLike,
    thresholds: Mapping[str, float],
    n: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: Groups = None,
) -> dict[str, tuple[float, float]]:
    """Intervals of ``auc``, ``ap``, ``eer`` and the accuracy at each named threshold.

    Equal (up to rounding) to :func:`bootstrap_ci` of each metric with the same ``seed``, but
    one pass over the resamples serves all metrics. Single-class input gives NaN intervals.
    """
    y, s = check_binary(labels, scores)
    check_bootstrap_args(n, alpha)
    keys = ["auc", "ap", "eer", *thresholds]
    sampler = _Resampler(y, groups)
    if not both_classes(y):
        return {k: (math.nan, math.nan) for k in keys}
    curve = _WeightedCurve(y, s, thresholds)
    rng = np.random.default_rng(seed)
    table = np.empty((n, len(keys)))
    for b in range(n):
        stats = curve.stats(sampler.weights(sampler.pick(rng)))
        table[b] = [stats[k] for k in keys]
    return {k: _percentile_ci(table[:, j], alpha) for j, k in enumerate(keys)}
