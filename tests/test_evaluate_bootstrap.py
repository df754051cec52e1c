"""Bootstrap confidence intervals: determinism, stratification, grouping, fast path."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mfclip.evaluate import metrics as M


def _problem(seed: int = 0, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A separable-ish binary problem with both classes present."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    return y, rng.random(n) + 0.5 * y


def test_bootstrap_deterministic_and_seed_dependent() -> None:
    y, s = _problem()
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
    y, s = _problem()
    with pytest.raises(ValueError, match="resamples"):
        M.bootstrap_ci(M.roc_auc, y, s, n=0)
    with pytest.raises(ValueError, match="alpha"):
        M.bootstrap_ci(M.roc_auc, y, s, alpha=1.5)


def test_video_auc_ci_equals_generic_bootstrap() -> None:
    rng = np.random.default_rng(6)
    groups = np.repeat(np.arange(30), 4)
    y = np.repeat(np.arange(30) % 2, 4)
    s = rng.random(y.size) + 0.4 * y
    res = M.summarize(y, s, groups=groups, bootstrap=120, seed=2)
    _, vy, vs = M.video_scores(groups, y, s)
    ref = M.bootstrap_ci(M.roc_auc, vy, vs, n=120, seed=2)
    np.testing.assert_allclose(res["video_auc_ci"], ref, rtol=0, atol=1e-12)


def test_bootstrap_by_group_rejects_mixed_groups() -> None:
    with pytest.raises(ValueError, match="mixed labels"):
        M.bootstrap_ci(M.roc_auc, [0, 1, 1], [0.1, 0.2, 0.3], n=5, groups=["a", "a", "b"])
