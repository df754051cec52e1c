"""Protocols: the bundled files parse; a small protocol runs end to end into one table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mfclip.config import ConfigError
from mfclip.protocol import list_protocols, load_protocol, run_protocol
from mfclip.train.trainer import Trainer

from .protocol_data import make_tree, write_protocol


def test_bundled_protocols_parse():
    names = list_protocols()
    assert {
        "genface-cross-generator",
        "genface-cross-forgery",
        "diff-cross-forgery",
        "cross-dataset",
        "faces-sample-cross-generator",
    } <= set(names)
    for name in names:
        protocol = load_protocol(name)
        assert protocol.experiments and all(e.tests for e in protocol.experiments)
    cross = load_protocol("cross-dataset")
    assert [e.train.name for e in cross.experiments] == ["GenFace", "DiFF", "FF++"]


def test_small_protocol_runs_end_to_end(tmp_path, monkeypatch):
    make_tree(tmp_path / "data")
    spec = write_protocol(tmp_path / "p.yaml", "tiny-cross-generator")
    out = tmp_path / "out"
    result = run_protocol(spec, [str(tmp_path / "data")], out, bootstrap=0, progress=False)
    assert set(result["results"]["genA"]) == {"genA", "genB"}
    report = (out / "report.md").read_text()
    assert "genA" in report and "genB" in report and "AUC" in report
    assert (out / "genA" / "eval" / "genB" / "report.md").is_file()
    assert json.loads((out / "report.json").read_text())["protocol"] == "tiny-cross-generator"
    train_rows = (out / "sets" / "genA" / "train.csv").read_text()
    assert "genB" not in train_rows and ",test," not in train_rows
    assert "Metric definitions: mfclip (EER interpolated" in report

    # A folder of an earlier release (no trained.json marker) is reused, not trained again.
    (out / "genA" / "trained.json").unlink()
    calls = []
    monkeypatch.setattr(Trainer, "fit", lambda self: calls.append(self.run_dir))
    again = run_protocol(spec, [str(tmp_path / "data")], out, bootstrap=0, progress=False)
    assert calls == [] and again["results"] == result["results"]


def test_protocol_root_errors(tmp_path):
    with pytest.raises(ConfigError, match="give each as --root NAME=PATH"):
        run_protocol("cross-dataset", [str(tmp_path)], tmp_path / "o")
    with pytest.raises(ConfigError, match="needs --root for diff, ffpp"):
        run_protocol("cross-dataset", [f"genface={tmp_path}"], tmp_path / "o")
    with pytest.raises(ConfigError, match="does not exist"):
        run_protocol("genface-cross-generator", [str(tmp_path / "nope")], tmp_path / "o")
    with pytest.raises(ConfigError, match="unknown protocol 'nope'"):
        load_protocol("nope")


def test_bundled_training_configs_load():
    from importlib import resources

    from mfclip.train import load_train_config

    folder = resources.files("mfclip").joinpath("configs/train")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".yaml"))
    assert names
    for name in names:
        config = load_train_config(Path(str(folder.joinpath(name))))
        assert config.data.manifest.endswith(".csv")
