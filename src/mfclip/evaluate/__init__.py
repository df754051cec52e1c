"""Evaluation: DeepfakeBench-style metrics, per-subset breakdowns, reports and plots.

Metrics (numpy and scikit-learn) and reports are imported eagerly; the plotting functions
load matplotlib on first use so that metric computation stays light.
"""

from __future__ import annotations

from typing import Any

from mfclip.evaluate.metrics import (
    accuracy,
    average_precision,
    balanced_accuracy,
    bootstrap_ci,
    breakdown,
    eer,
    pr_curve,
    roc_auc,
    roc_curve,
    summarize,
    threshold_at_eer,
    threshold_for_best_accuracy,
    video_scores,
)
from mfclip.evaluate.report import format_metric, protocol_table, write_report

__all__ = [
    "accuracy",
    "average_precision",
    "balanced_accuracy",
    "bootstrap_ci",
    "breakdown",
    "eer",
    "format_metric",
    "plot_pr",
    "plot_reliability",
    "plot_roc",
    "plot_tsne",
    "pr_curve",
    "protocol_table",
    "roc_auc",
    "roc_curve",
    "summarize",
    "threshold_at_eer",
    "threshold_for_best_accuracy",
    "video_scores",
    "write_report",
]

_PLOTS = {"plot_pr", "plot_reliability", "plot_roc", "plot_tsne"}


def __getattr__(name: str) -> Any:
    """Lazily expose the plotting helpers (matplotlib import costs ~0.5 s)."""
    if name in _PLOTS:
        from mfclip.evaluate import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
