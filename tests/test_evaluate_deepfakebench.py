"""DeepfakeBench's metric definitions: equal to a literal re-implementation, and not mfclip's."""

from __future__ import annotations

import math
from typing import get_args

import numpy as np
import pytest
from sklearn import metrics

from mfclip.cli import build_parser
from mfclip.evaluate import ranking
from mfclip.evaluate.deepfakebench import (
    METRIC_DEFINITIONS,
    MetricDefinitions,
    deepfakebench_metrics,
    video_key,
)
from mfclip.evaluate.thresholds import accuracy


def reference(y_pred: np.ndarray, y_true: np.ndarray, img_names: list[str]) -> dict[str, float]:
    """DeepfakeBench's ``get_test_metrics``, written out step by step in float64.

    Kept literal on purpose (string round trip through ``np.stack``, Python loops, dict order
    of first appearance) so the library's vectorised version is checked against the original
    procedure rather than against itself.
    """
    y_true = y_true.copy()
    y_true[y_true >= 1] = 1
    fpr, tpr, _ = metrics.roc_curve(y_true, y_pred, pos_label=1)
    auc = metrics.auc(fpr, tpr)
    fnr = 1 - tpr
    eer = fpr[np.nanargmin(np.absolute(fnr - fpr))]
    ap = metrics.average_precision_score(y_true, y_pred)
    prediction_class = (y_pred > 0.5).astype(int)
    correct = (prediction_class == np.clip(y_true, a_min=0, a_max=1)).sum().item()
    acc = correct / len(prediction_class)

    videos: dict[str, list[np.ndarray]] = {}
    for item in np.transpose(np.stack((np.array(img_names), y_pred, y_true)), (1, 0)):
        s = item[0]
        parts = s.split("\\") if "\\" in s else s.split("/")
        videos.setdefault(parts[-2], []).append(item)
    new_pred, new_label = [], []
    for frames in videos.values():
        pred_sum, label_sum, leng = 0.0, 0, 0
        for frame in frames:
            pred_sum += float(frame[1])
            label_sum += int(frame[2])
            leng += 1
        new_pred.append(pred_sum / leng)
        new_label.append(int(label_sum / leng))
    v_fpr, v_tpr, _ = metrics.roc_curve(new_label, new_pred)
    return {
        "auc": auc,
        "eer": eer,
        "ap": ap,
        "acc": acc,
        "video_auc": metrics.auc(v_fpr, v_tpr),
        "n_videos": len(videos),
    }


def video_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Frames of 30 folders; ``root/a/vidK`` (real) and ``root/b/vidK`` (fake) share names.

    Scores are multiples of 1/20 (many ties, within and across classes, some exactly 0.5).
    """
    rng = np.random.default_rng(seed)
    labels, scores, paths = [], [], []
    for k in range(30):
        if k < 10:  # same-named pairs: a real folder and a fake folder, merged by name
            folders = [(f"root/a/vid{k}", 0), (f"root/b/vid{k}", 1)]
        else:
            folders = [(f"root/c/vid{k}", k % 2)]
        for folder, label in folders:
            for j in range(int(rng.integers(2, 6))):
                labels.append(label)
                scores.append(float(rng.integers(4, 21) if label else rng.integers(0, 17)) / 20)
                paths.append(f"{folder}/{j:04d}.png")
    return np.array(labels), np.array(scores), paths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_a_literal_reimplementation(seed):
    y, s, paths = video_data(seed)
    assert len(np.unique(s)) < len(s) and (s == 0.5).any()  # ties, and scores on 0.5
    got = deepfakebench_metrics(y, s, paths)
    want = reference(s, y, paths)
    for key in ("auc", "eer", "ap", "acc", "video_auc"):
        assert got[key] == pytest.approx(want[key], abs=1e-12, rel=0), key
    assert got["n_videos"] == want["n_videos"] == 30  # 10 merged pairs + 20 single folders
    assert len({p.rsplit("/", 1)[0] for p in paths}) == 40
    assert (got["n"], got["n_real"], got["n_fake"]) == (len(y), int((y == 0).sum()), int(y.sum()))
    assert set(got) == {"n", "n_real", "n_fake", "auc", "eer", "ap", "acc", "n_videos", "video_auc"}


def test_video_key_is_the_parent_folder_name():
    assert video_key("root/a/vid1/0001.png") == video_key("root/b/vid1/0001.png") == "vid1"
    assert video_key("C:\\data\\vid7\\0001.png") == "vid7"
    assert video_key("a/b\\c/d.png") == "a/b"  # any backslash: split on backslashes only
    assert video_key("0001.png") is None


def test_nearest_point_eer_differs_from_mfclip_interpolated_eer():
    # Scores 0.9 F, 0.8 R, 0.7 R, 0.6 R, 0.5 F, 0.1 R. The full ROC passes through
    # (FPR 0.5, TPR 0.5), on the diagonal FNR = FPR, so mfclip's EER is 0.5. scikit-learn's
    # default curve drops that collinear point, leaving (0, 0.5) and (0.75, 0.5), and the
    # nearest of those to the diagonal is (0.75, 0.5): DeepfakeBench's EER is 0.75.
    y = np.array([1, 0, 0, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    paths = [f"v{i}/0.png" for i in range(6)]
    assert ranking.eer(y, s)[0] == pytest.approx(0.5)
    assert deepfakebench_metrics(y, s, paths)["eer"] == pytest.approx(0.75)
    assert reference(s, y, paths)["eer"] == pytest.approx(0.75)


def test_accuracy_is_strictly_above_one_half():
    y = np.array([0, 0, 1])
    s = np.array([0.5, 0.5, 0.9])  # exactly 0.5 counts as real here
    assert deepfakebench_metrics(y, s, ["v/0.png"] * 3)["acc"] == 1.0
    assert accuracy(y, s, 0.5) == pytest.approx(1 / 3)  # mfclip's ACC@0.5 flags p >= 0.5


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_is_nan_not_an_error(label):
    y = np.full(4, label)
    s = np.array([0.1, 0.4, 0.6, 0.9])
    out = deepfakebench_metrics(y, s, [f"v{i}/0.png" for i in range(4)], bootstrap=5)
    for key in ("auc", "eer", "ap", "video_auc"):
        assert math.isnan(out[key]), key
    assert out["acc"] == 0.5 and out["n_videos"] == 4
    assert all(math.isnan(v) for v in out["auc_ci"])


def test_video_auc_nan_when_videos_are_one_class_or_paths_have_no_folder():
    y = np.array([0, 1, 0, 1])
    s = np.array([0.2, 0.8, 0.3, 0.7])
    one_folder = deepfakebench_metrics(y, s, ["v/0.png", "v/1.png", "v/2.png", "v/3.png"])
    assert one_folder["n_videos"] == 1 and math.isnan(one_folder["video_auc"])
    assert one_folder["auc"] == 1.0
    flat = deepfakebench_metrics(y, s, ["0.png", "1.png", "2.png", "3.png"])
    assert flat["n_videos"] == 0 and math.isnan(flat["video_auc"]) and flat["auc"] == 1.0


def test_bad_input_raises():
    paths = ["v/0.png", "v/1.png"]
    with pytest.raises(ValueError, match="different lengths"):
        deepfakebench_metrics([0, 1, 1], [0.1, 0.2], paths)
    with pytest.raises(ValueError, match="paths has length"):
        deepfakebench_metrics([0, 1], [0.1, 0.2], paths[:1])
    with pytest.raises(ValueError, match="finite"):
        deepfakebench_metrics([0, 1], [0.1, float("nan")], paths)
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\)"):
        deepfakebench_metrics([0, 2], [0.1, 0.2], paths)


def test_bootstrap_intervals_contain_the_estimate_and_are_reproducible():
    y, s, paths = video_data(0)
    a = deepfakebench_metrics(y, s, paths, bootstrap=200, seed=3)
    b = deepfakebench_metrics(y, s, paths, bootstrap=200, seed=3)
    c = deepfakebench_metrics(y, s, paths, bootstrap=200, seed=4)
    for key in ("auc", "eer", "acc"):
        lo, hi = a[f"{key}_ci"]
        assert lo <= a[key] <= hi and lo < hi, key
        assert a[f"{key}_ci"] == b[f"{key}_ci"], key
    assert any(a[f"{k}_ci"] != c[f"{k}_ci"] for k in ("auc", "eer", "acc"))
    assert "auc_ci" not in deepfakebench_metrics(y, s, paths)
    groups = [p.rsplit("/", 1)[0] for p in paths]  # the real videos: full parent path
    grouped = deepfakebench_metrics(y, s, paths, bootstrap=200, seed=3, groups=groups)
    assert grouped["auc_ci"][0] <= grouped["auc"] <= grouped["auc_ci"][1]
    with pytest.raises(ValueError, match="alpha must be in"):
        deepfakebench_metrics(y, s, paths, bootstrap=10, alpha=2.0)


def test_option_values_agree_everywhere():
    assert METRIC_DEFINITIONS == get_args(MetricDefinitions) == ("mfclip", "deepfakebench")
    args = build_parser().parse_args(["evaluate", "--model", "m", "--data", "d"])
    assert args.metrics == "mfclip"
    args = build_parser().parse_args(
        ["evaluate", "--model", "m", "--data", "d", "--metrics", "deepfakebench"]
    )
    assert args.metrics == "deepfakebench"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--model", "m", "--data", "d", "--metrics", "x"])
