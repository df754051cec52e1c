"""``mfclip evaluate`` end to end on the tiny backbone: files, numbers, bad files, perturbations."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import mfclip
from mfclip.cli import main

from .test_train import make_dataset


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = mfclip.create_model("mfclip-tiny")
    model.training_info = {"threshold": 0.4}
    return model.save_pretrained(tmp_path_factory.mktemp("model") / "m")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    manifest = make_dataset(tmp_path_factory.mktemp("data"))
    (manifest.parent / "img039.png").write_bytes(b"not an image")  # one broken test file
    return manifest


def test_evaluate_writes_every_report_and_matches_sklearn(model_dir, data, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(model_dir), "--data", str(data), "--out", str(out)]
    argv += ["--workers", "0", "--quiet", "--bootstrap", "50", "--perturb", "jpeg=50", "blur=1"]
    assert main([*argv, "--tsne"]) == 0
    printed = capsys.readouterr().out
    assert "threshold 0.400" in printed and "skipped 1 unreadable" in printed
    for name in ("report.md", "metrics.json", "metrics.csv", "scores.csv", "roc.png", "pr.png"):
        assert (out / name).is_file(), name
    for name in ("tsne.png", "robustness.md", "robustness.json", "by_forgery_type/report.md"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert len(rows) == 7  # 8 test images, one unreadable
    labels = [int(r["label"]) for r in rows]
    scores = [float(r["score"]) for r in rows]
    overall = json.loads((out / "metrics.json").read_text())["subsets"]["all"]
    assert overall["auc"] == pytest.approx(roc_auc_score(labels, scores))
    acc = np.mean([(s >= 0.4) == bool(y) for y, s in zip(labels, scores, strict=True)])
    assert overall["acc@thr"] == pytest.approx(acc)
    robustness = json.loads((out / "robustness.json").read_text())
    assert list(robustness) == ["clean", "jpeg=50", "blur=1"]
    assert robustness["clean"]["auc"] == pytest.approx(overall["auc"])


def test_evaluate_errors_are_clear(model_dir, data, tmp_path, capsys):
    assert main(["evaluate", "--model", str(tmp_path), "--data", str(data), "--quiet"]) == 1
    assert "neither a saved model" in capsys.readouterr().err
    argv = ["evaluate", "--model", str(model_dir), "--data", str(data), "--split", "nope"]
    assert main([*argv, "--out", str(tmp_path / "o"), "--quiet", "--workers", "0"]) == 1
    assert "no usable rows" in capsys.readouterr().err


def test_video_metrics_only_for_video_like_groups():
    from mfclip.evaluate.runner import _video_groups

    def rec(group, label):
        return {"group": group, "label": label}

    videos = [rec("v1", 1), rec("v1", 1), rec("v2", 0), rec("v2", 0)]
    assert _video_groups(videos) == "group"
    assert _video_groups([rec("a", 1), rec("b", 0)]) is None  # one sample per group
    assert _video_groups([*videos, rec("v1", 0)]) is None  # identity groups: mixed labels
