"""Decisions at a score threshold, and the rules that pick that threshold.

Thresholds (:func:`threshold_for_best_accuracy`, :func:`threshold_at_eer`) must be fixed on
VALIDATION data and then applied unchanged to the test set; choosing them on the test set
inflates accuracy and is one of the most common reproducibility complaints in this field.
A sample is predicted fake when ``score >= threshold``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .ranking import eer
from .validation import FloatArray, IntArray, check_binary

__all__ = ["accuracy", "balanced_accuracy", "threshold_at_eer", "threshold_for_best_accuracy"]


def accuracy(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> float:
    """Fraction of correct decisions, predicting fake when ``score >= threshold``."""
    y, s = check_binary(labels, scores)
    return float(np.mean((s >= threshold) == (y == 1)))


def balanced_accuracy(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> float:
    """Mean per-class recall (TPR and TNR) at ``score >= threshold``; robust to imbalance.

    Like ``sklearn.metrics.balanced_accuracy_score``, only classes present in ``labels`` are
    averaged, so single-class input gives that class's recall.
    """
    y, s = check_binary(labels, scores)
    pred = s >= threshold
    recalls = [float(np.mean(pred[y == c] == bool(c))) for c in (0, 1) if np.any(y == c)]
    return float(np.mean(recalls))


def _counts(y: IntArray, s: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Exact cumulative (fps, tps, thresholds) at each distinct score, highest first.

    Counts rather than rates, so accuracy ties compare equal exactly.
    """
    order = np.argsort(s, kind="mergesort")[::-1]
    s_sorted = s[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s.shape[0] - 1]
    tps = np.cumsum(y[order], dtype=np.float64)[last]
    fps = (last + 1.0) - tps
    return fps, tps, s_sorted[last]


def threshold_for_best_accuracy(labels: ArrayLike, scores: ArrayLike) -> float:
    """Threshold maximising accuracy on these (VALIDATION) data, for use on the test set.

    Candidates are midway between consecutive distinct scores, plus one below all scores
    (everything fake) and one above (everything real), so the returned value separates the
    data exactly as the optimum does and generalises better than a value sitting on a
    sample's score. Ties go to the highest threshold (fewest samples flagged as fake).
    """
    y, s = check_binary(labels, scores)
    fps, tps, thr = _counts(y, s)
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
