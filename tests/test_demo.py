"""The built-in demo: every path it prints exists; the data operators do what they say."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mfclip.data.manifest import read_manifest
from mfclip.demo import OPERATORS, RECIPE, build_demo_dataset, run_demo
from mfclip.train import load_train_config


def test_demo_dataset_is_balanced_and_leak_free(tmp_path):
    manifest = build_demo_dataset(tmp_path, crops_per_photo=3, seed=1)
    records = read_manifest(manifest)
    assert {r.label for r in records} == {"real", "fake"}
    assert sum(r.is_fake for r in records) == sum(not r.is_fake for r in records)
    assert {r.generator for r in records if r.is_fake} == set(OPERATORS)
    splits_of_group: dict[str, set[str]] = {}
    for r in records:
        splits_of_group.setdefault(r.group, set()).add(r.split)
    assert all(len(s) == 1 for s in splits_of_group.values())


def test_demo_runs_end_to_end_and_every_printed_path_exists(tmp_path, capsys):
    paths = run_demo(tmp_path / "demo", epochs=1, crops_per_photo=3)
    out = capsys.readouterr().out
    assert "say nothing about detecting real forgeries" in out
    for path in paths.values():
        assert Path(path).exists(), path
    written = out.split("Written:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    printed = [line.split()[-1] for line in written]
    assert len(printed) == len(paths) and all(Path(p).exists() for p in printed)
    assert len(list((tmp_path / "demo" / "detect").glob("explain_*.png"))) >= 2
    assert paths["reliability"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The summary table: each figure parses, ECE before and after calibration is shown.
    auc = re.search(r"test AUC \[95 % CI\]\s+([0-9.]+)", out)
    assert auc and 0.0 <= float(auc.group(1)) <= 1.0
    ece = re.search(r"test ECE, 15 bins \(raw -> calibrated\)\s+([0-9.]+) -> ([0-9.]+)", out)
    assert ece and all(np.isfinite(float(v)) for v in ece.groups())
    assert "threshold (rule)" in out and "(eer, fitted on the validation split" in out
    assert "operating point: calibrated probabilities" in out
    card = paths["model card"].read_text()
    assert "## Evaluation" in card and "{{" not in card and str(paths["run"]) in card


def test_demo_recipe_is_a_valid_training_config(tmp_path):
    # The recipe the demo trains with is validated like a user's YAML (no silent typo).
    config = load_train_config({**RECIPE, "data": {**RECIPE["data"], "manifest": "m.csv"}})
    assert config.calibration == "temperature" and config.threshold == "eer"
    assert config.data.augment.jpeg_p == 0.0 and config.data.balanced
