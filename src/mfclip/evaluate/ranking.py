"""Ranking metrics (ROC, AUC, PR, AP, EER) on scikit-learn, with the project's edge cases.

Curves and areas come from ``sklearn.metrics`` so they match the reference implementation
everyone else reports. Around it this module keeps what scikit-learn does differently:
inputs are validated first (:func:`~mfclip.evaluate.validation.check_binary`), single-class
input gives ``nan`` instead of an exception or a warning (a per-subset breakdown can contain
such a subset, and one empty cell must not abort an evaluation), and the equal error rate,
which scikit-learn lacks, is interpolated on the full ROC.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numpy.typing import ArrayLike
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from .validation import FloatArray, both_classes, check_binary

__all__ = ["average_precision", "eer", "pr_curve", "roc_auc", "roc_curve"]


def roc_curve(
    labels: ArrayLike, scores: ArrayLike, *, drop_intermediate: bool = False
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """ROC curve ``(fpr, tpr, thresholds)`` from ``sklearn.metrics.roc_curve``.

    One point per distinct score (``drop_intermediate=False`` by default, so the full curve is
    kept for exact EER interpolation), preceded by the point (0, 0) at threshold ``inf``.
    With a single class the undefined rate (fpr without reals, tpr without fakes) is all NaN.
    """
    y, s = check_binary(labels, scores)
    with warnings.catch_warnings():
        # Single-class input: scikit-learn warns and returns NaN rates, which is what we want.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=drop_intermediate)
    return fpr.astype(np.float64), tpr.astype(np.float64), thr.astype(np.float64)


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (``sklearn.metrics.roc_auc_score``; ties count 1/2).

    ``nan`` when only one class is present: the AUC is undefined without reals and fakes.
    """
    y, s = check_binary(labels, scores)
    if not both_classes(y):
        return math.nan
    return float(skm.roc_auc_score(y, s))


def pr_curve(
    labels: ArrayLike, scores: ArrayLike, *, drop_intermediate: bool = False
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Precision-recall curve ``(precision, recall, thresholds)`` from scikit-learn.

    Recall is decreasing; the last point is (precision 1, recall 0) with no threshold, so
    ``thresholds`` is one shorter. Without fakes recall is undefined and returned as NaN
    (scikit-learn would set it to 1 and warn).
    """
    y, s = check_binary(labels, scores)
    has_fakes = bool(y.any())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No positive class found", category=UserWarning)
        precision, recall, thr = skm.precision_recall_curve(
            y, s, drop_intermediate=drop_intermediate
        )
    recall = recall.astype(np.float64)
    if not has_fakes:
        recall[:-1] = np.nan
    return precision.astype(np.float64), recall, thr.astype(np.float64)


def average_precision(labels: ArrayLike, scores: ArrayLike) -> float:
    """Average precision ``sum_n (R_n - R_{n-1}) P_n`` (``average_precision_score``).

    Returns ``nan`` for single-class input: without fakes it is undefined, and with only fakes
    it is trivially 1 and carries no information, so both are reported as missing.
    """
    y, s = check_binary(labels, scores)
    if not both_classes(y):
        return math.nan
    return float(skm.average_precision_score(y, s))


def eer(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """Equal error rate and the score threshold at which it occurs: ``(eer, threshold)``.

    The full ROC is walked from the strictest threshold; at the first operating point where
    the miss rate FNR = 1 - TPR is no longer above FPR, the crossing FPR = FNR is found by
    linear interpolation with the previous point (exact when a point lies on the diagonal).
    The threshold is interpolated the same way between the two points' thresholds (when the
    previous point is the artificial ``inf`` one, the finite threshold is used). Returns
    ``(nan, nan)`` for single-class input.
    """
    y, s = check_binary(labels, scores)
    if not both_classes(y):
        return math.nan, math.nan
    fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)
    gap = (1.0 - tpr) - fpr  # non-increasing: +1 at the start, -1 at the end
    i = int(np.argmax(gap <= 0.0))
    if gap[i] == 0.0:
        return float(fpr[i]), float(thr[i])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    rate = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    threshold = thr[i] if np.isinf(thr[i - 1]) else thr[i - 1] + t * (thr[i] - thr[i - 1])
    return float(rate), float(threshold)
