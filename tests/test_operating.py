"""Threshold rules meet their targets on their fitting data; the uncertain band is the
least-abstaining asymmetric band that reaches its target accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from mfclip.errors import MFCLIPError
from mfclip.evaluate.actionable import band_stats
from mfclip.evaluate.operating import rates_at, threshold_for_rule, uncertain_band
from mfclip.operating import OperatingPoint


def scored(n: int, seed: int, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(rng.normal(0, 1.5, n) + 1.2 * (2 * y - 1))))
    return y, (np.round(p, 2) if ties else p)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("target", [0.0, 0.001, 0.01, 0.05, 0.1, 0.37, 1.0])
def test_fpr_rule_never_exceeds_its_target_on_its_data(target: float, ties: bool) -> None:
    for seed in range(5):
        y, p = scored(500, seed, ties)
        threshold = threshold_for_rule(f"fpr={target}", y, p)
        fpr, _ = rates_at(y, p, threshold)
        assert fpr <= target
        flagged_reals = int(((p >= threshold) & (y == 0)).sum())
        assert flagged_reals == pytest.approx(fpr * (y == 0).sum())


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("target", [0.0, 0.5, 0.9, 0.95, 0.99, 1.0])
def test_tpr_rule_reaches_its_target_on_its_data(target: float, ties: bool) -> None:
    for seed in range(5):
        y, p = scored(500, seed, ties)
        _, tpr = rates_at(y, p, threshold_for_rule(f"tpr={target}", y, p))
        assert tpr >= target


def test_fpr_rule_is_the_lowest_such_threshold() -> None:
    y, p = scored(400, 1)
    threshold = threshold_for_rule("fpr=0.05", y, p)
    lower = np.nextafter(np.max(p[(y == 0) & (p < threshold)]), -np.inf)
    assert rates_at(y, p, lower)[0] > 0.05  # one step down would flag too many reals


def covered_accuracy(y: np.ndarray, p: np.ndarray, threshold: float, band: dict) -> tuple:
    """Coverage and accuracy counted image by image with the verdict words."""
    point = OperatingPoint(threshold, band=(band["lo"], band["hi"]))
    labels = [point.label(float(v)) for v in p]
    kept = [(lab, t) for lab, t in zip(labels, y, strict=True) if lab != "uncertain"]
    right = sum((lab == "fake") == bool(t) for lab, t in kept)
    return len(kept) / len(y), right / len(kept)


@pytest.mark.parametrize("target", [0.85, 0.9, 0.95, 0.97])
def test_uncertain_band_reaches_its_target_on_its_data(target: float) -> None:
    for seed in range(4):
        y, p = scored(600, seed)
        threshold = threshold_for_rule("eer", y, p)
        band = uncertain_band(y, p, threshold, target)
        assert band is not None and band["lo"] <= threshold <= band["hi"]
        coverage, accuracy = covered_accuracy(y, p, threshold, band)
        assert accuracy >= target
        assert (coverage, accuracy) == pytest.approx((band["coverage"], band["accuracy"]))
        assert band_stats(y, p, band["lo"], band["hi"])["accuracy"] == pytest.approx(accuracy)


def test_uncertain_band_is_asymmetric_where_the_errors_are() -> None:
    """Errors crowd just above the threshold; below it every image is a correct real.

    The old band, symmetric in |p - threshold|, had to widen to 0.2 on both sides and so
    set aside correct reals in (0.3, 0.5); the band sought per side keeps them.
    """
    rng = np.random.default_rng(0)
    reals_low = rng.uniform(0.05, 0.5, 400)  # correct, down to just under the threshold
    mixed = rng.uniform(0.5, 0.7, 200)  # half real, half fake: coin flips
    fakes_high = rng.uniform(0.7, 1.0, 400)  # correct
    p = np.concatenate([reals_low, mixed, fakes_high])
    y = np.concatenate([np.zeros(400), np.arange(200) % 2, np.ones(400)]).astype(int)
    band = uncertain_band(y, p, 0.5, 0.97)
    assert band is not None
    assert band["lo"] >= 0.45 and 0.6 < band["hi"] <= 0.7
    assert band["accuracy"] >= 0.97
    # The symmetric band reaching the same accuracy abstains on far more images.
    distance = np.abs(p - 0.5)
    correct = (p >= 0.5) == (y == 1)
    reaching = [d for d in np.unique(distance) if correct[distance >= d].mean() >= 0.97]
    symmetric_coverage = (distance >= min(reaching)).mean()
    assert band["coverage"] > symmetric_coverage + 0.1
    assert band["hi"] < 1.0


def test_uncertain_band_prefers_the_narrower_of_equal_coverage() -> None:
    # Every image outside (0.45, 0.55) is correct; lo may move down through empty space.
    p = np.array([0.1, 0.2, 0.3, 0.49, 0.51, 0.6, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    band = uncertain_band(y, p, 0.5, 0.9)
    assert band == {
        "lo": 0.3,
        "hi": 0.6,
        "target_accuracy": 0.9,
        "coverage": 0.75,
        "accuracy": 1.0,
    }


def test_uncertain_band_none_or_error() -> None:
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])
    assert uncertain_band(y, p, 0.5, 0.9) is None  # already accurate: no abstention
    coin = np.array([0, 1] * 50)
    with pytest.raises(MFCLIPError, match="no band reaches"):
        uncertain_band(coin, np.linspace(0.4, 0.6, 100), 0.5, 0.99)
    with pytest.raises(ValueError, match="target accuracy"):
        uncertain_band(y, p, 0.5, 1.0)


def test_uncertain_band_candidates_from_quantiles_on_large_sets() -> None:
    y, p = scored(20000, 3)
    threshold = threshold_for_rule("eer", y, p)
    band = uncertain_band(y, p, threshold, 0.9, candidates=64)
    exact = uncertain_band(y, p, threshold, 0.9, candidates=100000)
    assert band["accuracy"] >= 0.9 and exact["accuracy"] >= 0.9
    assert exact["coverage"] >= band["coverage"] > exact["coverage"] - 0.05


def brute_force_band(y: np.ndarray, p: np.ndarray, threshold: float, target: float) -> tuple:
    """(coverage, width) of the best band over every pair of edges, counted directly."""
    los = [0.0, threshold, *p[p < threshold]]
    his = [threshold, 1.0, *p[p >= threshold]]
    best = (-1.0, 0.0)
    for lo in los:
        for hi in his:
            if lo == hi == threshold:
                continue
            stats = band_stats(y, p, lo, hi)
            if stats["accuracy"] >= target - 1e-12:
                best = max(best, (stats["coverage"], -(hi - lo)))
    return best[0], -best[1]


@pytest.mark.parametrize("seed", range(6))
def test_uncertain_band_matches_brute_force(seed: int) -> None:
    y, p = scored(60, seed, ties=seed % 2 == 1)
    threshold = threshold_for_rule("eer", y, p)
    band = uncertain_band(y, p, threshold, 0.9)
    coverage, width = brute_force_band(y, p, threshold, 0.9)
    assert band["coverage"] == pytest.approx(coverage)
    assert band["hi"] - band["lo"] == pytest.approx(width)
