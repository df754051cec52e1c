"""Calibration metrics against hand-worked examples and independent float64 references."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss

from mfclip.evaluate.actionable import calibration_section
from mfclip.evaluate.calibration import (
    brier_score,
    calibration_summary,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)


def reference_ece(y: np.ndarray, p: np.ndarray, bins: int) -> float:
    """Equal-width ECE by an explicit loop over bins, in float64."""
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (p >= lo) & ((p < hi) if b < bins - 1 else (p <= hi))
        if inside.any():
            total += inside.sum() * abs(y[inside].mean() - p[inside].mean())
    return total / len(p)


def test_ece_hand_worked_15_bins() -> None:
    # Bins of width 1/15: {0.01, 0.02} in bin 0, {0.5, 0.52} in bin 7, {0.99} in bin 14.
    p = np.array([0.01, 0.02, 0.5, 0.52, 0.99])
    y = np.array([0, 1, 1, 1, 1])
    expected = (2 * abs(0.5 - 0.015) + 2 * abs(1 - 0.51) + abs(1 - 0.99)) / 5
    assert expected == pytest.approx(0.392)
    assert expected_calibration_error(y, p) == pytest.approx(expected, abs=1e-12)
    assert [r["n"] for r in reliability_bins(y, p)] == [2, 2, 1]


def test_ece_hand_worked_equal_width_and_adaptive() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1])
    # Equal width, 2 bins: {.1,.2,.3,.4} mean .25 share .25; {.8,.9} mean .85 share 1.
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(2 * 0.15 / 6)
    # Equal mass (median .35): {.1,.2,.3} mean .2 share 0; {.4,.8,.9} mean .7 share 1.
    assert expected_calibration_error(y, p, bins=2, adaptive=True) == pytest.approx(0.25)


def test_ece_matches_a_loop_on_random_sets() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.uniform(0, 1, 300)
        y = (rng.uniform(0, 1, 300) < p**1.5).astype(int)
        assert expected_calibration_error(y, p) == pytest.approx(reference_ece(y, p, 15))
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0


def test_brier_and_nll_match_sklearn_in_float64() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.001, 0.999, 500)
    y = rng.integers(0, 2, 500)
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p), rel=1e-12)
    assert negative_log_likelihood(y, p) == pytest.approx(log_loss(y, p), rel=1e-12)
    direct = -np.mean(np.where(y == 1, np.log(p), np.log(1 - p)))
    assert negative_log_likelihood(y, p) == pytest.approx(direct, rel=1e-12)
    summary = calibration_summary(y, p)
    assert set(summary) == {"ece", "ece_adaptive", "brier", "nll"}


def test_calibration_section_before_and_after() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    raw = np.clip(0.5 + 0.1 * (2 * y - 1) + rng.normal(0, 0.1, 200), 0.01, 0.99)
    sharp = 1 / (1 + np.exp(-3 * np.log(raw / (1 - raw))))
    section = calibration_section(y, raw, sharp, "temperature")
    assert section["calibrated"] and section["bins"] == 15
    assert section["before"]["brier"] == pytest.approx(brier_score_loss(y, raw))
    assert section["after"]["brier"] == pytest.approx(brier_score_loss(y, sharp))
    assert section["after"]["nll"] == pytest.approx(log_loss(y, sharp))
    assert sum(b["n"] for b in section["reliability"]["after"]) == 200
    # Uncalibrated: the model reports the raw softmax, so "after" is "before".
    plain = calibration_section(y, raw, raw + 1e-7, "none")
    assert not plain["calibrated"] and plain["after"] == plain["before"]
