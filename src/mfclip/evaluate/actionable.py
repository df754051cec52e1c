"""What a reported score is worth to the person reading it: calibration and abstention.

Two report sections computed from one evaluation set's labels and scores. *Calibration*
measures whether a probability of 0.8 means "fake four times in five", before (raw softmax)
and after the model's stored calibration. *Abstention* shows what accuracy is bought by
calling the images closest to the threshold uncertain, and how the model's stored uncertain
band does on this set (its coverage and accuracy were fitted on other data).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .calibration import DEFAULT_BINS, calibration_summary, reliability_bins
from .operating import coverage_curve
from .validation import check_binary

__all__ = ["abstention_section", "band_stats", "calibration_section"]


def calibration_section(
    labels: ArrayLike, raw: ArrayLike, calibrated: ArrayLike, method: str
) -> dict[str, Any]:
    """ECE (equal-width and adaptive), Brier and NLL before and after calibration.

    ``method`` is the model's stored calibration; with ``none`` the model reports the raw
    softmax, so "after" is "before" (not a second, float-noisy copy of it).
    """
    y, p_raw = check_binary(labels, raw)
    _, p_cal = check_binary(labels, calibrated)
    is_calibrated = method != "none"
    after = p_cal if is_calibrated else p_raw
    return {
        "method": method,
        "calibrated": is_calibrated,
        "bins": DEFAULT_BINS,
        "before": calibration_summary(y, p_raw),
        "after": calibration_summary(y, after),
        "reliability": {"before": reliability_bins(y, p_raw), "after": reliability_bins(y, after)},
    }


def band_stats(labels: ArrayLike, probs: ArrayLike, lo: float, hi: float) -> dict[str, Any]:
    """Coverage and covered accuracy of the uncertain band ``lo < p < hi``.

    Outside the band ``p >= hi`` is fake and ``p <= lo`` real, the rule of
    :meth:`mfclip.operating.OperatingPoint.label`.
    """
    y, p = check_binary(labels, probs)
    uncertain = (p > lo) & (p < hi)
    covered = ~uncertain
    correct = (p >= hi) == (y == 1)
    return {
        "lo": float(lo),
        "hi": float(hi),
        "coverage": float(covered.mean()),
        "accuracy": float(correct[covered].mean()) if covered.any() else math.nan,
        "n_uncertain": int(uncertain.sum()),
        "uncertain_real": int((uncertain & (y == 0)).sum()),
        "uncertain_fake": int((uncertain & (y == 1)).sum()),
    }


def abstention_section(
    labels: ArrayLike,
    probs: ArrayLike,
    threshold: float,
    band: Mapping[str, Any] | None = None,
    points: int = 11,
) -> dict[str, Any]:
    """Coverage against accuracy around ``threshold``, and the stored band's result here.

    ``band`` is the model's ``training_info["uncertain"]`` (``lo``, ``hi`` and, when it was
    fitted, the ``target_accuracy``, ``coverage`` and ``accuracy`` it had on its fitting data).
    """
    y, p = check_binary(labels, probs)
    out: dict[str, Any] = {
        "threshold": float(threshold),
        "accuracy": float(np.mean((p >= threshold) == (y == 1))),
        "curve": coverage_curve(y, p, threshold, points),
        "band": None,
    }
    if band:
        stats = band_stats(y, p, float(band["lo"]), float(band["hi"]))
        fitted = {k: band[k] for k in ("target_accuracy", "coverage", "accuracy") if k in band}
        out["band"] = {**stats, "fitted": fitted or None}
    return out
