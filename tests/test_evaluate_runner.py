"""``mfclip evaluate`` end to end on the tiny backbone: files, numbers, bad files, perturbations."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

import mfclip
from mfclip.cli import main
from mfclip.evaluate.runner import EvalOptions, evaluate
from mfclip.operating import OperatingPoint

from .test_calibration import reference_ece
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
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
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
    assert robustness["clean"]["fpr@thr"] == pytest.approx(overall["fpr@thr"])
    assert all({"fpr@thr", "tpr@thr", "eer", "ap"} <= set(row) for row in robustness.values())
    assert "FPR@thr" in (out / "robustness.md").read_text()

    # Operating rates: counted by hand from scores.csv at the stored threshold 0.4.
    y, p = np.array(labels), np.array(scores)
    assert overall["fpr@thr"] == pytest.approx(np.mean(p[y == 0] >= 0.4))
    assert overall["tpr@thr"] == pytest.approx(np.mean(p[y == 1] >= 0.4))
    for key in ("tpr@fpr=0.001", "tpr@fpr=0.01", "tpr@fpr=0.05", "fpr@tpr=0.95"):
        assert 0.0 <= overall[key] <= 1.0, key
    # Calibration of an uncalibrated model: after equals before, on the raw softmax.
    payload = json.loads((out / "metrics.json").read_text())
    calibration = payload["calibration"]
    assert calibration["calibrated"] is False and calibration["after"] == calibration["before"]
    raw = np.array([float(r["raw_score"]) for r in rows])
    assert calibration["before"]["brier"] == pytest.approx(brier_score_loss(y, raw), rel=1e-9)
    assert calibration["before"]["nll"] == pytest.approx(log_loss(y, raw), rel=1e-9)
    assert calibration["before"]["ece"] == pytest.approx(reference_ece(y, raw, 15), rel=1e-9)
    assert payload["abstention"]["band"] is None and len(payload["abstention"]["curve"]) > 1
    assert "cross_source" not in payload  # the reals have one (unnamed) source
    md = (out / "report.md").read_text()
    assert "## Calibration" in md and "uncalibrated" in md and "## Operating points" in md
    assert "TPR@FPR=1%" in md and "## Abstention" in md
    assert "Metric definitions: mfclip (EER interpolated on the full ROC" in md
    assert payload["metric_definitions"] == "mfclip" and not (out / "deepfakebench.json").exists()


def test_evaluate_deepfakebench_metrics_on_the_raw_score(model_dir, data, tmp_path):
    out = tmp_path / "eval"
    options = EvalOptions(num_workers=0, bootstrap=0, progress=False, metrics="deepfakebench")
    result = evaluate(model_dir, data, out, options)
    rows = list(csv.DictReader((out / "scores.csv").open()))
    y = np.array([int(r["label"]) for r in rows])
    raw = np.array([float(r["raw_score"]) for r in rows])
    dfb = result["deepfakebench"]
    assert list(dfb) == list(result["by_generator"]) == ["all", "DDPM", "LatentDiffusion"]
    assert dfb["all"]["auc"] == pytest.approx(roc_auc_score(y, raw), abs=1e-12)
    assert dfb["all"]["acc"] == pytest.approx(np.mean((raw > 0.5) == (y == 1)))
    # All images sit in one folder: one DeepfakeBench "video", of both labels, so no video AUC.
    assert dfb["all"]["n_videos"] == 1 and dfb["all"]["video_auc"] != dfb["all"]["video_auc"]
    on_disk = json.loads((out / "deepfakebench.json").read_text())
    assert on_disk["DDPM"]["auc"] == pytest.approx(dfb["DDPM"]["auc"])
    assert on_disk["all"]["video_auc"] is None  # strict JSON: NaN -> null
    assert result["metric_definitions"] == "deepfakebench"
    assert json.loads((out / "metrics.json").read_text())["metric_definitions"] == "deepfakebench"
    md = (out / "report.md").read_text()
    assert "## DeepfakeBench metrics" in md and "Metric definitions: deepfakebench" in md
    with pytest.raises(ValueError, match="metrics must be one of"):
        evaluate(model_dir, data, tmp_path / "bad", EvalOptions(metrics="paper"))  # type: ignore[arg-type]


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


@pytest.fixture(scope="module")
def calibrated_dir(tmp_path_factory):
    """A tiny model with a stored calibration, threshold and uncertain band."""
    torch.manual_seed(1)
    model = mfclip.create_model("mfclip-tiny")
    model.training_info = {
        "threshold": 0.5,
        "uncertain": {"lo": 0.4, "hi": 0.6, "target_accuracy": 0.9, "coverage": 0.7},
    }
    model.set_calibration({"method": "platt", "a": 4.0, "b": 2.0})
    return model.save_pretrained(tmp_path_factory.mktemp("calibrated") / "m")


@pytest.fixture(scope="module")
def two_sources(data, tmp_path_factory):
    """The same images, with reals named as coming from FFHQ or CelebA-HQ."""
    rows = list(csv.DictReader(data.open()))
    for i, row in enumerate(rows):
        row["path"] = str(data.parent / row["path"])
        if row["label"] == "real":
            row["generator"] = ("FFHQ", "CelebA-HQ")[(i // 2) % 2]
    path = tmp_path_factory.mktemp("sources") / "two_sources.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_evaluate_calibrated_model_band_and_cross_source(calibrated_dir, two_sources, tmp_path):
    out = tmp_path / "eval"
    options = EvalOptions(split=None, num_workers=0, bootstrap=0, progress=False)
    result = evaluate(calibrated_dir, two_sources, out, options)
    rows = list(csv.DictReader((out / "scores.csv").open()))
    y = np.array([int(r["label"]) for r in rows])
    p = np.array([float(r["score"]) for r in rows])
    raw = np.array([float(r["raw_score"]) for r in rows])
    margin = np.array([float(r["margin"]) for r in rows])
    assert p == pytest.approx(1 / (1 + np.exp(-(4 * margin + 2))), abs=1e-5)
    assert raw == pytest.approx(1 / (1 + np.exp(-margin)), abs=1e-5)

    payload = json.loads((out / "metrics.json").read_text())
    calibration = payload["calibration"]
    assert calibration["calibrated"] and calibration["method"] == "platt"
    for key, values in (("before", raw), ("after", p)):
        assert calibration[key]["brier"] == pytest.approx(brier_score_loss(y, values), rel=1e-9)
        assert calibration[key]["nll"] == pytest.approx(log_loss(y, values), rel=1e-9)
        assert calibration[key]["ece"] == pytest.approx(reference_ece(y, values, 15), rel=1e-9)
    assert calibration["after"] != calibration["before"]
    assert (out / "reliability.png").is_file()

    # The stored band, counted image by image with the verdict words.
    point = OperatingPoint.from_training_info(
        {"threshold": 0.5, "uncertain": {"lo": 0.4, "hi": 0.6}}
    )
    verdicts = [point.label(float(v)) for v in p]
    kept = [(v, t) for v, t in zip(verdicts, y, strict=True) if v != "uncertain"]
    band = payload["abstention"]["band"]
    assert band["coverage"] == pytest.approx(len(kept) / len(y))
    assert band["n_uncertain"] == verdicts.count("uncertain") > 0 and kept
    right = sum((v == "fake") == bool(t) for v, t in kept)
    assert band["accuracy"] == pytest.approx(right / len(kept))
    assert band["fitted"] == {"target_accuracy": 0.9, "coverage": 0.7}

    # Cross-source: each source's reals against all fakes, and against each generator.
    table = result["cross_source"]
    assert payload["cross_source"]["definition"] == table["definition"]
    source = np.array([r["generator"] for r in rows])
    assert sorted(table["by_source"]) == ["CelebA-HQ", "FFHQ"]
    for name, row in table["by_source"].items():
        mask = ((y == 0) & (source == name)) | (y == 1)
        assert row["auc"] == pytest.approx(roc_auc_score(y[mask], p[mask]))
        assert row["fpr@thr"] == pytest.approx(np.mean(p[(y == 0) & (source == name)] >= 0.5))
        for gen in ("DDPM", "LatentDiffusion"):
            pair = ((y == 0) & (source == name)) | ((y == 1) & (source == gen))
            assert table["pairs"][name][gen] == pytest.approx(roc_auc_score(y[pair], p[pair]))
    md = (out / "report.md").read_text()
    assert "## Cross-source AUC" in md and "AUC vs DDPM" in md and "Stored uncertain band" in md
    assert "(platt)" in md
