"""mfclip.evaluate.metrics against scikit-learn and brute-force references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from mfclip.evaluate import metrics as M


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


# --------------------------------------------------------------------------- vs scikit-learn


def test_auc_ap_match_sklearn_on_many_random_sets() -> None:
    for y, s in CASES:
        assert M.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
        assert M.average_precision(y, s) == pytest.approx(
            skm.average_precision_score(y, s), abs=1e-12
        )


@pytest.mark.parametrize("drop", [False, True])
def test_curves_match_sklearn(drop: bool) -> None:
    for y, s in CASES:
        for ours, ref in zip(
            M.roc_curve(y, s, drop_intermediate=drop),
            skm.roc_curve(y, s, drop_intermediate=drop),
            strict=True,
        ):
            np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
        for ours, ref in zip(
            M.pr_curve(y, s, drop_intermediate=drop),
            skm.precision_recall_curve(y, s, drop_intermediate=drop),
            strict=True,
        ):
            np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_accuracy_and_balanced_accuracy_match_sklearn() -> None:
    for y, s in CASES:
        # Include a threshold equal to a score value: ties must count as fake (>=).
        for thr in (0.5, float(np.median(s)), float(s[0])):
            pred = (s >= thr).astype(int)
            assert M.accuracy(y, s, thr) == pytest.approx(skm.accuracy_score(y, pred), abs=1e-15)
            assert M.balanced_accuracy(y, s, thr) == pytest.approx(
                skm.balanced_accuracy_score(y, pred), abs=1e-15
            )


def test_auc_accepts_bool_and_list_inputs() -> None:
    y = [False, True, True, False, True]
    s = [0.1, 0.9, 0.4, 0.4, 0.2]
    assert M.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s))


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


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_deterministic_and_seed_dependent() -> None:
    y, s = CASES[0]
    a = M.bootstrap_ci(M.roc_auc, y, s, n=200, seed=7)
    b = M.bootstrap_ci(M.roc_auc, y, s, n=200, seed=7)
    c = M.bootstrap_ci(M.roc_auc, y, s, n=200, seed=8)
    assert a == b
    assert a != c
    assert a[0] <= a[1]


def test_bootstrap_ci_contains_point_estimate_and_shrinks_with_alpha() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    s = rng.normal(size=500) + 2.0 * y
    auc = M.roc_auc(y, s)
    lo, hi = M.bootstrap_ci(M.roc_auc, y, s, n=500)
    assert lo < auc < hi
    assert 0.0 < hi - lo < 0.1
    lo2, hi2 = M.bootstrap_ci(M.roc_auc, y, s, n=500, alpha=0.5)
    assert lo <= lo2 < hi2 <= hi


def test_bootstrap_is_stratified() -> None:
    y = np.array([0] * 30 + [1] * 3)
    s = np.linspace(0, 1, y.size)
    seen: list[tuple[int, int]] = []

    def record(yb: np.ndarray, sb: np.ndarray) -> float:
        seen.append((int((yb == 0).sum()), int((yb == 1).sum())))
        return M.roc_auc(yb, sb)

    lo, hi = M.bootstrap_ci(record, y, s, n=100)
    assert set(seen) == {(30, 3)}
    assert not (math.isnan(lo) or math.isnan(hi))


def test_bootstrap_groups_resamples_whole_videos() -> None:
    rng = np.random.default_rng(2)
    n_videos, frames = 20, 5
    groups = np.repeat(np.arange(n_videos), frames)
    y = np.repeat(np.arange(n_videos) % 2, frames)
    # Score encodes (video, frame) uniquely so a resample can be decoded.
    s = groups + np.tile(np.arange(frames), n_videos) / 10 + rng.random(groups.size) * 1e-3
    checked = []

    def check(yb: np.ndarray, sb: np.ndarray) -> float:
        vids = np.floor(sb).astype(int)
        for v in np.unique(vids):
            frame_ids = np.round((sb[vids == v] - v) * 10).astype(int) % frames
            counts = np.bincount(frame_ids, minlength=frames)
            assert counts.min() == counts.max() >= 1  # each frame of the video k times
        checked.append(len(np.unique(vids)) < n_videos)
        return 0.0

    M.bootstrap_ci(check, y, s, n=50, groups=groups)
    assert len(checked) == 50
    assert any(checked)  # some videos were left out, i.e. units really are resampled


def test_summarize_fast_bootstrap_equals_generic_bootstrap() -> None:
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(40), 6)
    y = np.repeat(rng.integers(0, 2, 40), 6)
    y[:6], y[6:12] = 0, 1
    s = np.round(rng.random(y.size) * 0.7 + 0.3 * y, 2)
    fns = {
        "auc": M.roc_auc,
        "ap": M.average_precision,
        "eer": lambda a, b: M.eer(a, b)[0],
        "acc@0.5": lambda a, b: M.accuracy(a, b, 0.5),
        "acc@thr": lambda a, b: M.accuracy(a, b, 0.42),
    }
    for g in (None, groups):
        res = M.summarize(y, s, threshold=0.42, groups=g, bootstrap=150, seed=3)
        for key, fn in fns.items():
            ref = M.bootstrap_ci(fn, y, s, n=150, seed=3, groups=g)
            np.testing.assert_allclose(res[f"{key}_ci"], ref, rtol=0, atol=1e-12)


def test_bootstrap_argument_errors() -> None:
    y, s = CASES[0]
    with pytest.raises(ValueError, match="resamples"):
        M.bootstrap_ci(M.roc_auc, y, s, n=0)
    with pytest.raises(ValueError, match="alpha"):
        M.bootstrap_ci(M.roc_auc, y, s, alpha=1.5)


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
    }  # fmt: skip
    assert base["auc"] == M.roc_auc(y, s)
    assert base["ap"] == M.average_precision(y, s)
    assert (base["eer"], base["eer_threshold"]) == M.eer(y, s)
    assert base["n"] == len(y) and base["n_fake"] == int(np.sum(y))
    assert base["n_real"] + base["n_fake"] == base["n"]

    groups = np.arange(len(y)) // 2 * 2 + y  # videos of up to 2 frames, single-label
    full = M.summarize(y, s, threshold=0.3, groups=groups, bootstrap=50)
    assert full["acc@thr"] == M.accuracy(y, s, 0.3)
    assert full["balanced_acc@thr"] == M.balanced_accuracy(y, s, 0.3)
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
        assert res[gen]["auc"] == pytest.approx(skm.roc_auc_score(y[mask], s[mask]))
        assert res[gen]["n_real"] == 50
        assert res[gen]["n_fake"] == gens.count(gen)
    assert res["all"]["auc"] == pytest.approx(skm.roc_auc_score(y, s))
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
