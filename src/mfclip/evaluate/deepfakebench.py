"""DeepfakeBench's metric definitions, reproduced exactly, so a row can sit beside its tables.

Most face-forgery papers report numbers from DeepfakeBench (SCLBD/DeepfakeBench,
``training/metrics/utils.py``, ``get_test_metrics``). mfclip's own definitions
(:mod:`~mfclip.evaluate.summary`) differ on purpose, and the differences show in the third
decimal, so an mfclip row is only comparable with a published one when both are computed the
same way. :func:`deepfakebench_metrics` computes them as DeepfakeBench does:

* **AUC**: ``auc(*roc_curve(y, p, pos_label=1)[:2])``, the same number as mfclip's AUC.
* **EER**: the FPR of the point of scikit-learn's ROC (``drop_intermediate=True``, so only
  the corners are left) where ``|FNR - FPR|`` is smallest. mfclip interpolates the crossing
  FPR = FNR on the full ROC, which is never further from the crossing.
* **AP**: ``average_precision_score``, as mfclip's.
* **ACC**: share of images right when ``p > 0.5`` (strictly) means fake. mfclip reports
  ``p >= 0.5`` and the accuracy at the model's stored threshold.
* **Video AUC**: frames grouped by the *name* of their parent folder (two folders of the same
  name in different places merge into one "video"), a video's score the mean of its frames',
  its label ``int(mean label)`` (fake only if every frame is), then the AUC of those. mfclip
  groups by the manifest's ``group`` column and refuses groups with both labels.

Scores are the model's probability of "fake" before calibration, as DeepfakeBench scores its
softmax output. DeepfakeBench's own code crashes where these are undefined (a single class,
of frames or of videos); here they are NaN, as in :mod:`~mfclip.evaluate.ranking`. The
bootstrap intervals are mfclip's addition: DeepfakeBench reports none.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Hashable, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from sklearn import metrics as skm

from .bootstrap import bootstrap_ci, check_bootstrap_args
from .grouping import group_index
from .validation import FloatArray, IntArray, both_classes, check_binary

__all__ = [
    "DEFINITION",
    "METRIC_DEFINITIONS",
    "SUMMARY",
    "MetricDefinitions",
    "deepfakebench_metrics",
    "video_key",
]

log = logging.getLogger(__name__)

MetricDefinitions = Literal["mfclip", "deepfakebench"]
#: The accepted values of :data:`MetricDefinitions`, for option checks and CLI choices.
METRIC_DEFINITIONS: tuple[MetricDefinitions, ...] = ("mfclip", "deepfakebench")

#: One line per set of definitions, for a report's "Metric definitions: ..." line.
SUMMARY: dict[MetricDefinitions, str] = {
    "mfclip": (
        "EER interpolated on the full ROC; accuracy at the stored threshold; video = manifest group"
    ),
    "deepfakebench": (
        "DeepfakeBench's get_test_metrics on the raw (uncalibrated) p(fake): EER at the nearest "
        "ROC point; accuracy at p > 0.5; video = parent folder name"
    ),
}

#: How each key of :func:`deepfakebench_metrics` is computed, in words (report notes).
DEFINITION: dict[str, str] = {
    "auc": "area under scikit-learn's ROC curve (ties count 1/2)",
    "eer": (
        "FPR of the ROC point (scikit-learn's default curve, intermediate points dropped) "
        "where |FNR - FPR| is smallest; not interpolated"
    ),
    "ap": "scikit-learn's average_precision_score",
    "acc": "share of images right when p > 0.5 (strictly) is called fake",
    "video_auc": (
        "AUC over videos: frames grouped by the name of their parent folder (folders of the "
        "same name merge), score = mean frame score, label = fake only if every frame is"
    ),
}


def _roc(y: IntArray, s: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``(fpr, tpr)`` of scikit-learn's default ROC, as DeepfakeBench calls it."""
    fpr, tpr, _ = skm.roc_curve(y, s, pos_label=1)
    return fpr, tpr


def _auc(y: IntArray, s: FloatArray) -> float:
    return float(skm.auc(*_roc(y, s)))


def _eer(y: IntArray, s: FloatArray) -> float:
    fpr, tpr = _roc(y, s)
    return float(fpr[np.nanargmin(np.absolute((1 - tpr) - fpr))])


def _acc(y: IntArray, s: FloatArray) -> float:
    return int(np.count_nonzero((s > 0.5).astype(int) == np.clip(y, 0, 1))) / y.shape[0]


def video_key(path: str | os.PathLike[str]) -> str | None:
    """DeepfakeBench's video id of a frame: its parent folder's name (None without one).

    The path is split on backslashes when it has any, else on slashes, and the last part but
    one is kept: ``root/a/vid1/0001.png`` and ``root/b/vid1/0001.png`` both give ``vid1``.
    """
    text = os.fspath(path)
    parts = text.split("\\" if "\\" in text else "/")
    return parts[-2] if len(parts) >= 2 else None


def _videos(paths: Sequence[Any], y: IntArray, s: FloatArray) -> tuple[IntArray, FloatArray]:
    """Per-video ``(labels, mean scores)`` in order of first appearance, as DeepfakeBench.

    Sums run frame by frame in float64, as DeepfakeBench's Python loop does; a video is fake
    when ``int(n_fake / n)`` is 1, i.e. only when every frame is.
    """
    keys = [video_key(p) for p in paths]
    _, codes = group_index(keys, y.shape[0])
    counts = np.bincount(codes)
    means = np.bincount(codes, weights=s) / counts
    labels = np.floor(np.bincount(codes, weights=y) / counts).astype(np.int64)
    return labels, means


def deepfakebench_metrics(
    labels: ArrayLike,
    scores: ArrayLike,
    paths: Sequence[str | os.PathLike[str]],
    bootstrap: int = 0,
    seed: int = 0,
    alpha: float = 0.05,
    *,
    groups: Sequence[Hashable] | ArrayLike | None = None,
) -> dict[str, Any]:
    """Frame and video metrics exactly as DeepfakeBench's ``get_test_metrics`` computes them.

    ``scores`` are p(fake) before calibration (DeepfakeBench's softmax output), ``labels``
    1 = fake, ``paths`` the frames' files (their parent folder's name is the video id). Keys:
    ``n, n_real, n_fake, auc, eer, ap, acc, n_videos, video_auc``. AUC, EER, AP and video AUC
    are NaN for a single class (of frames, or of videos for video AUC); ``n_videos`` is 0 and
    video AUC NaN when a path has no parent folder. With ``bootstrap > 0``, ``auc_ci``,
    ``eer_ci`` and ``acc_ci`` are (low, high) percentile intervals from the same stratified
    resamples (:func:`~mfclip.evaluate.bootstrap.bootstrap_ci` with one ``seed``); with
    ``groups`` (video ids without mixed labels) whole groups are resampled.
    """
    y, s = check_binary(labels, scores)
    names = list(paths)
    if len(names) != y.shape[0]:
        raise ValueError(f"paths has length {len(names)} but there are {y.shape[0]} scores")
    n_fake = int(y.sum())
    defined = both_classes(y)
    out: dict[str, Any] = {
        "n": int(y.shape[0]),
        "n_real": int(y.shape[0]) - n_fake,
        "n_fake": n_fake,
        "auc": _auc(y, s) if defined else math.nan,
        "eer": _eer(y, s) if defined else math.nan,
        "ap": float(skm.average_precision_score(y, s)) if defined else math.nan,
        "acc": _acc(y, s),
    }
    if any(video_key(p) is None for p in names):
        log.warning("DeepfakeBench video AUC skipped: some paths have no parent folder")
        out["n_videos"], out["video_auc"] = 0, math.nan
    else:
        vy, vs = _videos(names, y, s)
        out["n_videos"] = int(vy.shape[0])
        out["video_auc"] = _auc(vy, vs) if both_classes(vy) else math.nan
    if bootstrap > 0:
        check_bootstrap_args(bootstrap, alpha)
        for key, fn in (("auc", _auc), ("eer", _eer), ("acc", _acc)):
            out[f"{key}_ci"] = bootstrap_ci(fn, y, s, bootstrap, alpha, seed, groups)
    return out
