"""mfclip.evaluate.metrics against float64 brute-force references (not scikit-learn)."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest

from mfclip.evaluate import metrics as M
from mfclip.evaluate.operating import fpr_at_tpr, rates_at, tpr_at_fpr


def _cases(n_cases: int = 120, seed: int = 0):
    """Random binary problems: continuous, heavily tied, imbalanced, tiny and integer-scored."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_cases):
        kind = i % 5
        n = int(rng.integers(2, 8)) if kind == 3 else int(rng.integers(10, 400))
        pos_rate = 0.05 if kind == 2 else rng.uniform(0.2, 0.8)
        y = (rng.random(n) < pos_rate).astype(int)
        y[0], y[1] = 0, 1  # both classes present
        rng.shuffle(y)
        s = rng.random(n) + rng.uniform(0, 1) * y
        if kind == 1:
            s = np.round(s, 1)
        elif kind == 4:
            s = rng.integers(0, 4, n).astype(float)
        out.append((y, s))
    return out


CASES = _cases()


# --------------------------------------------------------------------------- references
# Brute-force float64 definitions, written independently of scikit-learn (which the
# implementation calls): every count is taken directly at every candidate threshold.


def _counts_at_thresholds(y: np.ndarray, s: np.ndarray) -> list[tuple[float, int, int]]:
    """(threshold, true positives, false positives) at each distinct score, highest first."""
    pos, neg = s[y == 1], s[y == 0]
    return [
        (t, int(np.sum(pos >= t)), int(np.sum(neg >= t)))
        for t in sorted(set(s.tolist()), reverse=True)
    ]


def _ref_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Fraction of (fake, real) pairs ranked correctly; a tied pair counts 1/2."""
    pos, neg = s[y == 1], s[y == 0]
    twice = sum(2 * int(np.sum(p > neg)) + int(np.sum(p == neg)) for p in pos)
    return twice / (2 * len(pos) * len(neg))


def _ref_ap(y: np.ndarray, s: np.ndarray) -> float:
    """sum_k (R_k - R_{k-1}) P_k over the distinct thresholds, R_0 = 0."""
    n_pos = int(np.sum(y == 1))
    ap, prev_recall = 0.0, 0.0
    for _, tp, fp in _counts_at_thresholds(y, s):
        recall = tp / n_pos
        ap += (recall - prev_recall) * (tp / (tp + fp))
        prev_recall = recall
    return ap


def _keep(
    points: list[tuple[float, int, int]], rule: Callable[..., bool]
) -> list[tuple[float, int, int]]:
    """Endpoints plus the interior points for which ``rule(prev, point, next)`` holds."""
    if len(points) <= 2:
        return points
    inner = [points[i] for i in range(1, len(points) - 1) if rule(*points[i - 1 : i + 2])]
    return [points[0], *inner, points[-1]]


def _ref_roc(y: np.ndarray, s: np.ndarray, drop: bool):
    points = _counts_at_thresholds(y, s)
    if drop:  # drop a point on a straight, evenly spaced run (both second differences 0)
        points = _keep(
            points, lambda a, b, c: a[1] - 2 * b[1] + c[1] != 0 or a[2] - 2 * b[2] + c[2] != 0
        )
    n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    thr = [math.inf] + [t for t, _, _ in points]
    tpr = [0.0] + [tp / n_pos for _, tp, _ in points]
    fpr = [0.0] + [fp / n_neg for _, _, fp in points]
    return np.array(fpr), np.array(tpr), np.array(thr)


def _ref_pr(y: np.ndarray, s: np.ndarray, drop: bool):
    points = _counts_at_thresholds(y, s)
    if drop:  # drop a point whose true-positive count equals both neighbours'
        points = _keep(points, lambda a, b, c: a[1] != b[1] or b[1] != c[1])
    n_pos = int(np.sum(y == 1))
    points = points[::-1]  # increasing threshold, decreasing recall
    precision = [tp / (tp + fp) for _, tp, fp in points] + [1.0]
    recall = [tp / n_pos for _, tp, _ in points] + [0.0]
    return np.array(precision), np.array(recall), np.array([t for t, _, _ in points])


def _ref_accuracy(y: np.ndarray, s: np.ndarray, thr: float) -> tuple[float, float]:
    """(accuracy, balanced accuracy) by counting each decision."""
    correct = [(float(v) >= thr) == (int(c) == 1) for c, v in zip(y, s, strict=True)]
    per_class = [
        sum(ok for ok, c in zip(correct, y, strict=True) if c == k) / int(np.sum(y == k))
        for k in (0, 1)
        if np.any(y == k)
    ]
    return sum(correct) / len(correct), sum(per_class) / len(per_class)


def test_references_on_a_hand_worked_example() -> None:
    # Scores 0.8 (fake), 0.5 (fake, real), 0.2 (real): 3 of 4 pairs won, one tie.
    y = np.array([1, 1, 0, 0])
    s = np.array([0.8, 0.5, 0.5, 0.2])
    assert _ref_auc(y, s) == 0.875
    # Thresholds 0.8, 0.5, 0.2 -> (R, P) = (1/2, 1), (1, 2/3), (1, 1/2).
    assert _ref_ap(y, s) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-15)
    assert M.roc_auc(y, s) == pytest.approx(0.875, abs=1e-15)
    assert M.average_precision(y, s) == pytest.approx(5 / 6, abs=1e-15)


# --------------------------------------------------------------------------- vs references


def test_auc_ap_match_bruteforce_on_many_random_sets() -> None:
    for y, s in CASES:
        assert M.roc_auc(y, s) == pytest.approx(_ref_auc(y, s), abs=1e-12)
        assert M.average_precision(y, s) == pytest.approx(_ref_ap(y, s), abs=1e-12)


@pytest.mark.parametrize("drop", [False, True])
def test_curves_match_bruteforce(drop: bool) -> None:
    for y, s in CASES:
        for ours, ref in zip(
            M.roc_curve(y, s, drop_intermediate=drop), _ref_roc(y, s, drop), strict=True
        ):
            assert ours.dtype == np.float64
            np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
        for ours, ref in zip(
            M.pr_curve(y, s, drop_intermediate=drop), _ref_pr(y, s, drop), strict=True
        ):
            np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_accuracy_and_balanced_accuracy_match_counting() -> None:
    for y, s in CASES[:60]:
        # Include a threshold equal to a score value: ties must count as fake (>=).
        for thr in (0.5, float(np.median(s)), float(s[0])):
            acc, bacc = _ref_accuracy(y, s, thr)
            assert M.accuracy(y, s, thr) == pytest.approx(acc, abs=1e-15)
            assert M.balanced_accuracy(y, s, thr) == pytest.approx(bacc, abs=1e-15)


def test_auc_accepts_bool_and_list_inputs() -> None:
    y = [False, True, True, False, True]
    s = [0.1, 0.9, 0.4, 0.4, 0.2]
    # Pairs won: 0.9 beats both reals, 0.4 beats 0.1 and ties 0.4, 0.2 beats 0.1 -> 4.5 / 6.
    assert M.roc_auc(y, s) == pytest.approx(0.75, abs=1e-15)


# --------------------------------------------------------------------------- EER


def _eer_bruteforce(y: np.ndarray, s: np.ndarray) -> float:
    """Count FPR/FNR directly at every candidate threshold; intersect the polyline with FPR=FNR."""
    neg, pos = s[y == 0], s[y == 1]
    points = []
    for t in [math.inf, *sorted(set(s.tolist()), reverse=True)]:
        fpr = sum(1 for v in neg if v >= t) / len(neg)
        fnr = sum(1 for v in pos if v < t) / len(pos)
        points.append((fpr, fnr))
    for (f0, m0), (f1, m1) in itertools.pairwise(points):
        if m1 - f1 <= 0 < m0 - f0:
            # Solve f0 + u (f1 - f0) = m0 + u (m1 - m0) for u in (0, 1].
            u = (m0 - f0) / ((m0 - f0) - (m1 - f1))
            return f0 + u * (f1 - f0)
    raise AssertionError("no crossing")


def test_eer_matches_bruteforce_and_bounds() -> None:
    for y, s in CASES[:60]:
        rate, _ = M.eer(y, s)
        assert rate == pytest.approx(_eer_bruteforce(y, s), abs=1e-12)
        # The interpolated EER lies between max_t min(FPR, FNR) and min_t max(FPR, FNR).
        fpr, tpr, _ = M.roc_curve(y, s)
        fnr = 1 - tpr
        assert np.max(np.minimum(fpr, fnr)) - 1e-12 <= rate <= np.min(np.maximum(fpr, fnr)) + 1e-12


def test_eer_known_values() -> None:
    # ROC points (FPR, FNR): (0,1) (0,.5) (.5,.5) -> exact crossing at threshold 0.4.
    assert M.eer([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == (0.5, 0.4)
    assert M.eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])[0] == 0.0
    assert M.eer([0, 0, 1, 1], [0.8, 0.9, 0.1, 0.2])[0] == 1.0
    assert M.eer([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == (0.5, 0.3)


def test_eer_threshold_balances_error_rates_on_large_set() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 20_000)
    s = rng.normal(size=y.size) + 1.5 * y
    rate, thr = M.eer(y, s)
    fpr = np.mean(s[y == 0] >= thr)
    fnr = np.mean(s[y == 1] < thr)
    assert abs(fpr - fnr) < 2e-3
    assert abs(rate - (fpr + fnr) / 2) < 2e-3
    assert M.threshold_at_eer(y, s) == thr


# --------------------------------------------------------------------------- thresholds


def test_threshold_for_best_accuracy_is_optimal() -> None:
    for y, s in CASES[:60]:
        thr = M.threshold_for_best_accuracy(y, s)
        best = max(np.mean((s >= t) == (y == 1)) for t in [math.inf, *s.tolist()])
        assert M.accuracy(y, s, thr) == pytest.approx(best, abs=1e-15)


def test_threshold_for_best_accuracy_sits_between_classes() -> None:
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    assert M.threshold_for_best_accuracy(y, s) == pytest.approx(0.5)
    # All-real optimum: threshold above every score.
    y2 = np.array([0, 0, 0, 1])
    s2 = np.array([0.5, 0.6, 0.7, 0.1])
    thr = M.threshold_for_best_accuracy(y2, s2)
    assert thr > 0.7 and M.accuracy(y2, s2, thr) == 0.75


# --------------------------------------------------------------------------- video level


def test_video_scores_means_and_order() -> None:
    groups = ["b", "a", "b", "c", "a", "b"]
    labels = [1, 0, 1, 1, 0, 1]
    scores = [0.9, 0.2, 0.6, 0.5, 0.4, 0.3]
    ids, vy, vs = M.video_scores(groups, labels, scores)
    assert ids == ["b", "a", "c"]
    np.testing.assert_array_equal(vy, [1, 0, 1])
    np.testing.assert_allclose(vs, [0.6, 0.3, 0.5])


def test_video_scores_mixed_labels_rejected() -> None:
    with pytest.raises(ValueError, match=r"both real and fake.*'v2'"):
        M.video_scores(["v1", "v2", "v2"], [0, 0, 1], [0.1, 0.2, 0.3])


def test_video_scores_group_length_mismatch() -> None:
    with pytest.raises(ValueError, match="length"):
        M.video_scores(["a"], [0, 1], [0.1, 0.2])


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_gives_nan(label: int) -> None:
    y = [label] * 5
    s = [0.1, 0.2, 0.3, 0.4, 0.5]
    assert math.isnan(M.roc_auc(y, s))
    assert math.isnan(M.average_precision(y, s))
    assert all(math.isnan(v) for v in M.eer(y, s))
    assert all(math.isnan(v) for v in M.bootstrap_ci(M.roc_auc, y, s, n=10))
    fpr, tpr, _ = M.roc_curve(y, s)
    assert np.isnan(fpr if label == 1 else tpr).all()
    res = M.summarize(y, s, bootstrap=10)
    assert math.isnan(res["auc"]) and math.isnan(res["auc_ci"][0])
    assert res["acc@0.5"] == M.accuracy(y, s)


def test_single_class_curves_and_no_warnings() -> None:
    s = [0.1, 0.2, 0.2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn's single-class warnings stay inside
        precision, recall, thr = M.pr_curve([0, 0, 0], s)
        np.testing.assert_array_equal(precision, [0.0, 0.0, 1.0])
        assert np.isnan(recall[:-1]).all() and recall[-1] == 0.0
        np.testing.assert_array_equal(thr, [0.1, 0.2])
        precision, recall, _ = M.pr_curve([1, 1, 1], s)
        np.testing.assert_array_equal(precision, [1.0, 1.0, 1.0])
        np.testing.assert_allclose(recall, [1.0, 2 / 3, 0.0], rtol=0, atol=1e-15)
        fpr, tpr, thr = M.roc_curve([1, 1, 1], s)
        assert np.isnan(fpr).all()
        np.testing.assert_allclose(tpr, [0.0, 2 / 3, 1.0], rtol=0, atol=1e-15)
        np.testing.assert_array_equal(thr, [math.inf, 0.2, 0.1])
        for labels in ([0, 0, 0], [1, 1, 1]):
            M.roc_curve(labels, s, drop_intermediate=True)
            M.summarize(labels, s, threshold=0.15, groups=[0, 1, 2], bootstrap=5)


def test_single_sample_is_defined_where_it_can_be() -> None:
    assert math.isnan(M.roc_auc([1], [0.3]))
    assert M.accuracy([1], [0.3], 0.5) == 0.0
    assert M.threshold_for_best_accuracy([1], [0.3]) == 0.3


def test_to_columns_rows_and_columns() -> None:
    rows = [{"label": 0, "score": 0.1}, {"label": 1, "generator": "DDPM"}]
    assert M.to_columns(rows) == {
        "label": [0, 1],
        "score": [0.1, None],
        "generator": [None, "DDPM"],
    }
    assert M.to_columns({"a": (1, 2)}) == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("labels", "scores", "match"),
    [
        ([0, 1], [0.1, float("nan")], "NaN"),
        ([0, 1], [0.1, float("inf")], "infinite"),
        ([0, 1, 1], [0.1, 0.2], "different lengths"),
        ([0, 2], [0.1, 0.2], r"0 \(real\) or 1 \(fake\)"),
        ([-1, 1], [0.1, 0.2], "0 \\(real\\) or 1"),
        ([], [], "empty"),
        (["real", "fake"], [0.1, 0.2], "numeric"),
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
    ],
)
def test_bad_input_raises(labels, scores, match: str) -> None:
    for fn in (M.roc_auc, M.average_precision, M.eer, M.accuracy, M.summarize, M.roc_curve):
        with pytest.raises(ValueError, match=match):
            fn(labels, scores)


# --------------------------------------------------------------------------- summaries


def test_summarize_keys_and_values() -> None:
    y, s = CASES[1]
    base = M.summarize(y, s, bootstrap=0)
    assert set(base) == {
        "n", "n_real", "n_fake", "auc", "ap", "eer", "eer_threshold",
        "acc@0.5", "balanced_acc@0.5",
        "tpr@fpr=0.001", "tpr@fpr=0.01", "tpr@fpr=0.05", "fpr@tpr=0.95",
    }  # fmt: skip
    assert base["tpr@fpr=0.05"] == tpr_at_fpr(y, s, 0.05)
    assert base["fpr@tpr=0.95"] == fpr_at_tpr(y, s, 0.95)
    assert base["auc"] == M.roc_auc(y, s)
    assert base["ap"] == M.average_precision(y, s)
    assert (base["eer"], base["eer_threshold"]) == M.eer(y, s)
    assert base["n"] == len(y) and base["n_fake"] == int(np.sum(y))
    assert base["n_real"] + base["n_fake"] == base["n"]

    groups = np.arange(len(y)) // 2 * 2 + y  # videos of up to 2 frames, single-label
    full = M.summarize(y, s, threshold=0.3, groups=groups, bootstrap=50)
    assert full["acc@thr"] == M.accuracy(y, s, 0.3)
    assert full["balanced_acc@thr"] == M.balanced_accuracy(y, s, 0.3)
    assert (full["fpr@thr"], full["tpr@thr"]) == rates_at(y, s, 0.3)
    _, vy, vs = M.video_scores(groups, y, s)
    assert full["video_auc"] == M.roc_auc(vy, vs)
    assert full["n_videos"] == len(vy)
    for key in ("auc", "ap", "eer", "acc@0.5", "acc@thr", "video_auc"):
        lo, hi = full[f"{key}_ci"]
        assert lo <= hi


def test_breakdown_pairs_each_generator_with_all_reals() -> None:
    rng = np.random.default_rng(5)
    gens = ["real"] * 50 + ["DDPM"] * 30 + ["DiffAE"] * 20
    labels = [0] * 50 + [1] * 50
    scores = rng.random(100) + 0.3 * np.array(labels)
    cols = {"label": labels, "score": scores.tolist(), "generator": gens}
    res = M.breakdown(cols, "generator", bootstrap=20)
    assert list(res) == ["all", "DDPM", "DiffAE"]
    y, s = np.array(labels), scores
    for gen in ("DDPM", "DiffAE"):
        mask = (y == 0) | (np.array(gens) == gen)
        assert res[gen]["auc"] == pytest.approx(_ref_auc(y[mask], s[mask]), abs=1e-12)
        assert res[gen]["n_real"] == 50
        assert res[gen]["n_fake"] == gens.count(gen)
    assert res["all"]["auc"] == pytest.approx(_ref_auc(y, s), abs=1e-12)
    # A list of row dicts gives the same result as a dict of columns.
    rows = [
        {"label": a, "score": b, "generator": c} for a, b, c in zip(*cols.values(), strict=True)
    ]
    assert M.breakdown(rows, "generator", bootstrap=20) == res


def test_breakdown_errors() -> None:
    cols = {"label": [0, 1], "score": [0.1, 0.9], "generator": [None, None]}
    with pytest.raises(ValueError, match="no 'generator' value"):
        M.breakdown(cols, "generator", bootstrap=0)
    with pytest.raises(ValueError, match="no column 'subset'"):
        M.breakdown(cols, "subset", bootstrap=0)
    with pytest.raises(ValueError, match="different lengths"):
        M.breakdown({"label": [0, 1], "score": [0.1]}, "label", bootstrap=0)
