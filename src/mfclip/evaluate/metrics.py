"""Binary detection metrics: the one import for callers (trainer, runner, reports, plots).

Convention: label 1 = fake (the positive class), label 0 = real, and a higher score means
"more likely fake". Curves and areas come from scikit-learn; the project keeps its own input
checks, equal error rate, threshold rules, video/group aggregation and bootstrap intervals.
Every edge case is explicit:

* bad input (empty, length mismatch, NaN/inf scores, labels outside {0, 1}) raises
  ``ValueError`` with a message saying what is wrong;
* single-class input makes the ranking metrics (AUC, AP, EER) undefined: they return ``nan``
  instead of raising, because a per-subset breakdown can legitimately contain such a subset
  and one empty cell must not abort a whole evaluation run.

Decision thresholds (``threshold_for_best_accuracy``, ``threshold_at_eer``) must be fixed on
VALIDATION data and then applied unchanged to the test set.

The implementation lives in :mod:`~mfclip.evaluate.ranking`,
:mod:`~mfclip.evaluate.thresholds`, :mod:`~mfclip.evaluate.grouping`,
:mod:`~mfclip.evaluate.bootstrap` and :mod:`~mfclip.evaluate.summary`.
"""

from __future__ import annotations

from .bootstrap import MetricFn, bootstrap_ci
from .grouping import to_columns, video_scores
from .ranking import average_precision, eer, pr_curve, roc_auc, roc_curve
from .summary import breakdown, summarize
from .thresholds import (
    accuracy,
    balanced_accuracy,
    threshold_at_eer,
    threshold_for_best_accuracy,
)
from .validation import FloatArray, IntArray

__all__ = [
    "FloatArray",
    "IntArray",
    "MetricFn",
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
    "to_columns",
    "video_scores",
]
