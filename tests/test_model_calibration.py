"""Calibration inside the model, refitting it with ``mfclip calibrate``, abstention.

The model maps its logits through the stored calibration in the forward pass, so the number
every path reports is the calibrated one; the weights never change when it is refitted.
"""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

import mfclip
from mfclip.cli import main
from mfclip.evaluate.calibration import negative_log_likelihood
from mfclip.model.calibration import Calibration


def _logits(z: np.ndarray) -> torch.Tensor:
    z = torch.as_tensor(z, dtype=torch.float32)
    return torch.stack([torch.zeros_like(z), z], dim=1)


def test_each_method_against_a_float64_reference():
    z = np.linspace(-12, 12, 97)
    cal = Calibration()
    np.testing.assert_allclose(cal(_logits(z)).numpy(), 1 / (1 + np.exp(-z)), atol=1e-6)
    cal.load({"method": "temperature", "temperature": 3.5})
    np.testing.assert_allclose(cal(_logits(z)).numpy(), 1 / (1 + np.exp(-z / 3.5)), atol=1e-6)
    cal.load({"method": "platt", "a": 0.4, "b": -1.2})
    np.testing.assert_allclose(
        cal(_logits(z)).numpy(), 1 / (1 + np.exp(-(0.4 * z - 1.2))), atol=1e-6
    )
    xs, ys = [-5.0, -1.0, 0.5, 4.0], [0.0, 0.2, 0.7, 1.0]
    cal.load({"method": "isotonic", "x": xs, "y": ys})
    np.testing.assert_allclose(cal(_logits(z)).numpy(), np.interp(z, xs, ys), atol=1e-6)
    for bad in (
        {"method": "magic"},
        {"method": "temperature", "temperature": 0},
        {"method": "isotonic", "x": [1.0, 0.0], "y": [0.0, 1.0]},
        {"method": "isotonic", "x": [0.0, 1.0], "y": [1.0, 0.0]},
    ):
        with pytest.raises(ValueError):
            Calibration().load(bad)


def _overconfident(scale: float) -> mfclip.MFCLIP:
    """A tiny model whose classifier logits are ``scale`` times too large."""
    torch.manual_seed(0)
    model = mfclip.create_model("mfclip-tiny").eval()
    with torch.no_grad():
        for p in model.head.parameters():
            p.mul_(scale)
    return model


@pytest.fixture(scope="module")
def miscalibrated(tmp_path_factory):
    """An overconfident model, and images labelled with the probabilities it should give."""
    root = tmp_path_factory.mktemp("calibrate")
    scale = 40.0
    model = _overconfident(scale)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (160, 64, 64, 3), dtype=np.uint8)
    images = np.kron(images, np.ones((1, 4, 4, 1), np.uint8))[:, :224, :224]  # blocky: varied
    logits = model.predict(torch.from_numpy(images).permute(0, 3, 1, 2)).logits
    margins = (logits[:, 1] - logits[:, 0]).numpy()
    spread = margins / margins.std() * 2.0  # what a calibrated margin would be
    labels = (rng.random(len(margins)) < 1 / (1 + np.exp(-spread))).astype(int)
    rows = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = root / f"{i:03d}.png"
        Image.fromarray(image).save(path)
        rows.append({"path": str(path), "label": ["real", "fake"][label],
                     "generator": "" if label == 0 else "DDPM", "split": "val"})  # fmt: skip
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    model_dir = model.save_pretrained(root / "model")
    return model_dir, manifest, labels, root


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_calibrate_lowers_nll_of_a_miscalibrated_model(miscalibrated, tmp_path, capsys):
    model_dir, manifest, labels, _ = miscalibrated
    out = tmp_path / "calibrated"
    argv = ["calibrate", str(model_dir), "--data", str(manifest), "--out", str(out)]
    assert main([*argv, "--rule", "fpr=0.1", "--workers", "0", "--quiet", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "before" in printed and "after" in printed and "fpr=0.1" in printed
    info = json.loads((out / "config.json").read_text())["training"]
    assert info["calibration"]["method"] == "temperature"
    assert info["calibration"]["temperature"] > 5  # the logits were 40x too large
    report = info["calibration_report"]
    assert report["after"]["nll"] < 0.5 * report["before"]["nll"]
    assert report["after"]["ece"] < report["before"]["ece"]
    # The weights are untouched: only config.json changed.
    assert _sha(out / "model.safetensors") == _sha(model_dir / "model.safetensors")
    # Every path now reports the calibrated probability: the Detector on the same files.
    detector = mfclip.Detector.from_pretrained(out, device="cpu")
    rows = list(csv.DictReader(manifest.open()))
    dets = detector([r["path"] for r in rows])
    probs = np.array([d.fake_prob for d in dets])
    raw = np.array([d.raw_prob for d in dets])
    assert negative_log_likelihood(labels, probs) < negative_log_likelihood(labels, raw)
    # The fpr=0.1 rule meets its target on the data it was fitted on.
    flagged_reals = [d.label == "fake" for d, y in zip(dets, labels, strict=True) if y == 0]
    assert 0 < np.mean(flagged_reals) <= 0.1
    assert all("fpr=0.1" in d.reason for d in dets)


def test_uncertain_band_reaches_every_label(miscalibrated, tmp_path, capsys):
    model_dir, manifest, _, _ = miscalibrated
    out = tmp_path / "band"
    argv = ["calibrate", str(model_dir), "--data", str(manifest), "--out", str(out), "--quiet"]
    argv += ["--rule", "fixed", "--uncertain-band", "0.35,0.65", "--workers", "0"]
    assert main([*argv, "--device", "cpu"]) == 0
    detector = mfclip.Detector.from_pretrained(out, device="cpu")
    rows = list(csv.DictReader(manifest.open()))
    dets = detector([r["path"] for r in rows])
    for d in dets:
        expected = "uncertain" if 0.35 < d.fake_prob < 0.65 else d.label
        assert d.label == expected
        assert d.label != "uncertain" or "have a person look" in d.reason
    assert {d.label for d in dets} == {"real", "fake", "uncertain"}
    # The detect command gives the same verdicts, the words, and a summary of the rule.
    results = tmp_path / "detect.jsonl"
    argv = ["detect", *(r["path"] for r in rows), "--model", str(out), "--out", str(results)]
    assert main([*argv, "--device", "cpu"]) == 0
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["label"] for r in lines] == [d.label for d in dets]
    assert all(r["reason"] == d.reason for r, d in zip(lines, dets, strict=True))
    assert "uncertain between 0.350 and 0.650" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["calibrate", str(model_dir), "--data", str(manifest), "--out", str(out),
              "--uncertain-band", "0.7,0.2"])  # fmt: skip


def test_a_probability_that_contradicts_its_verdict_says_why():
    from mfclip.operating import OperatingPoint

    point = OperatingPoint(0.2, "tpr=0.95", fpr=0.3, tpr=0.95, fitted_on="the validation split")
    words = point.describe(0.31)
    assert words.startswith("FAKE") and "although below 50 %" in words
    assert "about 1 in 3 real photos" in words
    strict = OperatingPoint(0.8, "fpr=0.01", fpr=0.01, tpr=0.4)
    assert "although above 50 %" in strict.describe(0.7) and "1 in 100" in strict.describe(0.7)
    with pytest.raises(ValueError, match="contain the threshold"):
        OperatingPoint(0.5, band=(0.6, 0.7))
