"""Report sections a user acts on: JSON keys, Markdown wording, cross-source and abstention."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mfclip.evaluate import metrics as M
from mfclip.evaluate import report
from mfclip.evaluate.actionable import abstention_section, calibration_section
from mfclip.evaluate.cross_source import cross_source_auc
from mfclip.evaluate.sections import robustness_markdown


def make_records(sources: tuple[str, ...]) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(120):
        label = i % 2
        gen = ("DDPM", "SD")[i // 2 % 2] if label else sources[i // 2 % len(sources)]
        shift = 0.3 if label else (0.0 if gen == sources[0] else 0.2)
        score = float(np.clip(rng.normal(0.35 + shift, 0.15), 0, 1))
        rows.append({"label": label, "score": score, "raw_score": score, "generator": gen})
    return rows


def test_cross_source_needs_two_real_sources() -> None:
    assert cross_source_auc(make_records(("real",))) is None
    rows = make_records(("FFHQ", "CelebA-HQ"))
    table = cross_source_auc(rows, threshold=0.5)
    assert table is not None and table["generators"] == {"DDPM": 30, "SD": 30}
    y = np.array([r["label"] for r in rows])
    s = np.array([r["score"] for r in rows])
    g = np.array([r["generator"] for r in rows])
    reals = (y == 0) & (g == "CelebA-HQ")
    assert table["by_source"]["CelebA-HQ"]["auc"] == pytest.approx(
        roc_auc_score(y[reals | (y == 1)], s[reals | (y == 1)])
    )
    pair = reals | ((y == 1) & (g == "SD"))
    assert table["pairs"]["CelebA-HQ"]["SD"] == pytest.approx(roc_auc_score(y[pair], s[pair]))
    # The harder source (its reals score higher) shows up on its own.
    assert table["by_source"]["CelebA-HQ"]["auc"] < table["by_source"]["FFHQ"]["auc"]


def test_write_report_with_sections(tmp_path: Path) -> None:
    rows = make_records(("FFHQ", "CelebA-HQ"))
    y = [r["label"] for r in rows]
    s = [r["score"] for r in rows]
    results = M.breakdown(rows, "generator", threshold=0.5, bootstrap=0)
    sections = {
        "calibration": calibration_section(y, s, s, "none"),
        "abstention": abstention_section(y, s, 0.5, {"lo": 0.4, "hi": 0.6}),
        "cross_source": cross_source_auc(rows, 0.5),
    }
    paths = report.write_report(tmp_path, results, "set", sections=sections)
    payload = json.loads(paths["json"].read_text())
    assert {"calibration", "abstention", "cross_source"} <= set(payload)
    assert payload["abstention"]["band"]["fitted"] is None
    md = paths["markdown"].read_text()
    for heading in ("## Operating points", "## Calibration", "## Abstention", "## Cross-source"):
        assert heading in md, heading
    assert "The model is uncalibrated" in md
    assert "AUC of that source's real images against all fake images" in md
    # No sections, no cross-source key: one real source leaves the JSON without it.
    report.write_report(tmp_path / "plain", results, "set", sections={"cross_source": None})
    assert "cross_source" not in json.loads((tmp_path / "plain" / "metrics.json").read_text())


def test_abstention_curve_starts_without_abstaining() -> None:
    rows = make_records(("FFHQ",))
    y = np.array([r["label"] for r in rows])
    s = np.array([r["score"] for r in rows])
    section = abstention_section(y, s, 0.5)
    first = section["curve"][0]
    assert first["coverage"] == 1.0 and first["accuracy"] == pytest.approx(section["accuracy"])
    assert section["accuracy"] == pytest.approx(np.mean((s >= 0.5) == (y == 1)))
    assert section["band"] is None


def test_robustness_markdown_columns() -> None:
    rows = {
        "clean": {"perturbation": "none", "auc": 0.9, "fpr@thr": 0.01, "tpr@thr": 0.8, "n": 10},
        "social1080": {"perturbation": "long side at most 1080 px, then JPEG 75", "n": 10},
    }
    md = robustness_markdown(rows)
    assert "| Setting | What | AUC | AP | EER | FPR@thr | TPR@thr | ACC@thr | N |" in md
    assert "| clean | none | 0.900 | - | - | 1.00% | 80.00% | - | 10 |" in md
    assert "real and fake images alike" in md
