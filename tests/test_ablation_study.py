"""Ablation studies end to end on a tiny protocol: seeds, a failing row, resume, interruption."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from mfclip.cli import main
from mfclip.config import ConfigError
from mfclip.data.manifest import read_manifest
from mfclip.protocol import ProtocolRun, StudyOptions, run_ablations
from mfclip.protocol.study import config_changes
from mfclip.train import trainer as trainer_module

from .protocol_data import make_tree, write_protocol

REGISTRY = {
    "full": {"description": "reference", "groups": ["g"], "set": {}},
    "spa-off": {"description": "no SPA", "groups": ["g"], "set": {"model.spa.mode": "off"}},
    "broken": {"description": "invalid", "set": {"model.noise.patch_size": 9999}},
}


@pytest.fixture()
def study(tmp_path):
    """(protocol file, data root, registry file) of a two-test-set tiny protocol."""
    make_tree(tmp_path / "data")
    spec = write_protocol(tmp_path / "p.yaml", "tiny-ablations")
    registry = tmp_path / "ablations.yaml"
    registry.write_text(yaml.safe_dump(REGISTRY, sort_keys=False))
    return spec, tmp_path / "data", registry


def _count_fits(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    original = trainer_module.Trainer.fit

    def fit(self):
        calls.append(self.run_dir)
        return original(self)

    monkeypatch.setattr(trainer_module.Trainer, "fit", fit)
    return calls


def _crash_after_an_epoch(monkeypatch, row: str, message: str):
    """Make the runs of ``row`` raise ``RuntimeError(message)`` after their first epoch."""
    original = trainer_module.Trainer._end_epoch

    def crash(self, parts, state):
        if row in str(self.run_dir):
            raise RuntimeError(message)
        return original(self, parts, state)

    monkeypatch.setattr(trainer_module.Trainer, "_end_epoch", crash)
    return lambda: monkeypatch.setattr(trainer_module.Trainer, "_end_epoch", original)


def _cells(out: Path) -> list[dict]:
    return json.loads((out / "ablations.json").read_text())["cells"]


def test_seeds_failing_row_and_rerun_without_retraining(study, tmp_path, monkeypatch):
    spec, data, registry = study
    out = tmp_path / "out"
    options = StudyOptions(
        ablations="all", seeds=[0, 1], registry=str(registry), bootstrap=20, progress=False
    )
    table = run_ablations(spec, [str(data)], out, options)
    assert table.rows == ["full", "spa-off", "broken"]
    assert [(r.ablation, r.seed) for r in table.failed] == [("broken", 0), ("broken", 1)]
    assert "ConfigError" in table.failed[0].error and "patch_size" in table.failed[0].error
    assert (out / "ablations" / "broken" / "seed-0" / "error.txt").is_file()
    for row in ("full", "spa-off"):
        assert table.cell(row, "genB", "auc").n == 2
        seeds = [
            yaml.safe_load((out / "ablations" / row / f"seed-{s}" / "run" / "config.yaml").open())
            for s in (0, 1)
        ]
        assert [c["seed"] for c in seeds] == [0, 1]
    spa = yaml.safe_load((out / "ablations/spa-off/seed-0/run/config.yaml").open())
    assert spa["model"]["spa"]["mode"] == "off"
    scores = [(out / f"ablations/full/seed-{s}/eval/genA/scores.csv").read_text() for s in (0, 1)]
    assert scores[0] != scores[1]  # another seed is another run
    text = (out / "ablations.md").read_text()
    assert "## Failed runs" in text and "`broken` seed 0: ConfigError" in text
    for name in ("ablations.csv", "ablations.png"):
        assert (out / name).is_file()
    # Unseen generator: every genB image is a test fake, none of genA's training rows.
    genb = read_manifest(out / "sets" / "genA" / "tests" / "genB.csv")
    assert sum(r.generator == "genB" for r in genb) == 12
    training = {r.path for r in read_manifest(out / "sets" / "genA" / "train.csv")}
    assert {r.split for r in genb} == {"test"} and not training & {r.path for r in genb}

    before = _cells(out)
    fits = _count_fits(monkeypatch)
    again = run_ablations(spec, [str(data)], out, options)
    assert fits == []  # finished rows are never retrained
    assert _cells(out) == before
    assert len(again.failed) == 2  # the failing row is retried, and fails again
    moved = tmp_path / "elsewhere"  # finished rows and the data copied to another machine
    shutil.copytree(out, moved)
    shutil.copytree(data, tmp_path / "data2")
    run_ablations(spec, [str(tmp_path / "data2")], moved, options)
    assert fits == [] and _cells(moved) == before
    first = read_manifest(moved / "sets" / "genA" / "train.csv")[0].path
    assert first.startswith(str(tmp_path / "data2"))  # indexed again under the new root


def test_interrupted_study_resumes_to_the_uninterrupted_result(study, tmp_path, monkeypatch):
    spec, data, registry = study
    options = StudyOptions(
        ablations="full,spa-off", seeds=[0], registry=str(registry), bootstrap=0, progress=False
    )
    run_ablations(spec, [str(data)], tmp_path / "plain", options)

    out = tmp_path / "interrupted"
    original_init = trainer_module.Trainer.__init__

    def init(self, config, run_dir, resume=False, on_step=None, progress=True):
        def stop(trainer, step):
            if "spa-off" in str(run_dir) and step == 1:
                trainer.request_stop()

        original_init(self, config, run_dir, resume=resume, on_step=stop, progress=progress)

    monkeypatch.setattr(trainer_module.Trainer, "__init__", init)
    with pytest.raises(KeyboardInterrupt):
        run_ablations(spec, [str(data)], out, options)
    assert json.loads((out / "ablations/full/seed-0/row.json").read_text())["status"] == "done"
    stopped = out / "ablations/spa-off/seed-0"
    assert not (stopped / "row.json").exists() and (stopped / "run" / "last.json").is_file()
    monkeypatch.setattr(trainer_module.Trainer, "__init__", original_init)

    fits = _count_fits(monkeypatch)
    run_ablations(spec, [str(data)], out, options)
    assert fits == [stopped / "run"]  # only the interrupted row trains, resuming
    for a, b in zip(_cells(tmp_path / "plain"), _cells(out), strict=True):
        assert a["ablation"] == b["ablation"] and a["column"] == b["column"]
        assert a["values"] == pytest.approx(b["values"], abs=1e-6)


def test_changed_evaluation_retests_without_training(study, tmp_path, monkeypatch):
    spec, data, registry = study
    out = tmp_path / "out"
    options = StudyOptions(ablations="full", registry=str(registry), bootstrap=0, progress=False)
    run_ablations(spec, [str(data)], out, options)
    fits = _count_fits(monkeypatch)
    options.metrics = "deepfakebench"
    table = run_ablations(spec, [str(data)], out, options)
    assert fits == [] and not table.failed
    assert table.metrics == ("auc", "eer", "acc") and table.cell("full", "genB", "acc").n == 1
    assert (out / "ablations/full/seed-0/eval/genB/deepfakebench.json").is_file()
    assert "Metric definitions: deepfakebench (" in (out / "ablations.md").read_text()


def test_a_run_failing_mid_training_is_reported_and_retried(study, tmp_path, monkeypatch):
    spec, data, registry = study
    out = tmp_path / "out"
    options = StudyOptions(ablations="g", registry=str(registry), bootstrap=0, progress=False)
    restore = _crash_after_an_epoch(monkeypatch, "spa-off", "simulated crash after an epoch")
    table = run_ablations(spec, [str(data)], out, options)
    assert [(r.ablation, r.error) for r in table.failed] == [
        ("spa-off", "RuntimeError: simulated crash after an epoch")
    ]
    assert table.cell("full", "genA", "auc").n == 1  # the other row went on
    assert "simulated crash" in (out / "ablations/spa-off/seed-0/error.txt").read_text()
    restore()
    fits = _count_fits(monkeypatch)
    table = run_ablations(spec, [str(data)], out, options)
    assert not table.failed and fits == [out / "ablations/spa-off/seed-0/run"]


def test_unfinished_run_with_a_changed_config_starts_again(study, tmp_path, monkeypatch):
    spec, data, registry = study
    out = tmp_path / "out"
    options = StudyOptions(ablations="g", registry=str(registry), bootstrap=0, progress=False)
    restore = _crash_after_an_epoch(monkeypatch, "spa-off", "diverged")
    run_ablations(spec, [str(data)], out, options)
    restore()
    fixed = {
        **REGISTRY,
        "spa-off": {**REGISTRY["spa-off"], "set": {"model.spa.mode": "off", "optim.lr": 0.0005}},
    }
    registry.write_text(yaml.safe_dump(fixed, sort_keys=False))
    fits = _count_fits(monkeypatch)
    table = run_ablations(spec, [str(data)], out, options)
    assert not table.failed and fits == [out / "ablations/spa-off/seed-0/run"]  # full reused
    stale = list((out / "ablations" / "spa-off").glob("seed-0.stale-*"))
    assert len(stale) == 1 and (stale[0] / "error.txt").is_file()
    config = yaml.safe_load((out / "ablations/spa-off/seed-0/run/config.yaml").open())
    assert config["optim"]["lr"] == 0.0005


def test_changed_config_is_refused_not_mixed(study, tmp_path):
    spec, data, registry = study
    out = tmp_path / "out"
    options = StudyOptions(ablations="full", registry=str(registry), bootstrap=0, progress=False)
    run_ablations(spec, [str(data)], out, options)
    options.overrides = ["optim.lr=0.001"]
    table = run_ablations(spec, [str(data)], out, options)
    assert [r.ablation for r in table.failed] == ["full"]
    assert "another config" in table.failed[0].error and "optim.lr" in table.failed[0].error
    assert json.loads((out / "ablations/full/seed-0/row.json").read_text())["status"] == "done"


def test_test_set_sharing_training_images_is_refused(study, tmp_path):
    spec, data, _ = study
    text = spec.read_text().replace(
        "{name: genA, fake: {generator: [genA]}}\n      - {name: genB",
        "{name: genA, fake: {generator: [genA]}, splits: [train, test]}\n      - {name: genB",
    )
    spec.write_text(text)
    run = ProtocolRun.prepare(spec, [str(data)], tmp_path / "out", progress=False)
    exp = run.protocol.experiments[0]
    with pytest.raises(ConfigError, match=r"shares \d+ image"):
        run.test_manifest(exp, exp.tests[0])


def test_cli_lists_ablations_and_checks_arguments(capsys, study, tmp_path):
    assert main(["protocol", "ablations"]) == 0
    listed = capsys.readouterr().out
    assert "no-noise" in listed and "group quick:" in listed and "model.spa.mode=" in listed
    spec, data, _ = study
    args = ["protocol", "run", str(spec), "--root", str(data), "--out", str(tmp_path / "o")]
    assert main([*args, "--seeds", "2"]) == 1
    assert "need --ablations" in capsys.readouterr().err
    assert main([*args, "--ablations", "nope"]) == 1
    assert "unknown ablation or group 'nope'" in capsys.readouterr().err
    for bad in ("0", "3,", "1,1"):
        with pytest.raises(SystemExit):
            main([*args, "--ablations", "full", "--seeds", bad])


def test_metric_choices_agree_with_the_library():
    from mfclip.cli import build_parser
    from mfclip.evaluate.deepfakebench import METRIC_DEFINITIONS

    parser = build_parser()
    for argv in (
        ["evaluate", "--model", "m", "--data", "d"],
        ["protocol", "run", "p", "--root", "r"],
    ):
        action = next(
            a for a in _subparser(parser, argv)._actions if "--metrics" in a.option_strings
        )
        assert tuple(action.choices) == METRIC_DEFINITIONS


def _subparser(parser, argv):
    """The argparse parser that handles ``argv``'s (sub)command."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and argv and argv[0] in action.choices:
            return _subparser(action.choices[argv[0]], argv[1:])
    return parser


def test_registry_needs_a_reference_and_distinct_folders(tmp_path):
    from mfclip.protocol import load_ablations, resolve_ablations

    no_ref = tmp_path / "a.yaml"
    no_ref.write_text("spa-off: {set: {model.spa.mode: 'off'}}\n")
    with pytest.raises(ConfigError, match="no 'full' row"):
        resolve_ablations("all", load_ablations(no_ref))
    clash = tmp_path / "b.yaml"
    clash.write_text("full: {set: {}}\n'a b': {set: {}}\n'a-b': {set: {}}\n")
    with pytest.raises(ConfigError, match="would share folder 'a-b'"):
        load_ablations(clash)


def test_config_changes_ignore_new_fields_only():
    old = [{"optim": {"lr": 0.1}, "data": {"augment": {"flip_p": 0.5}}, "levels": [1, 2]}]
    grown = [
        {"optim": {"lr": 0.1}, "data": {"augment": {"flip_p": 0.5, "new_p": 0.0}}, "levels": [1, 2]}
    ]
    assert config_changes(old, grown) == []  # a field added since, at its default
    changed = [{"optim": {"lr": 0.2}, "data": {"augment": {}}, "levels": [1]}]
    assert config_changes(old, changed) == ["[0].optim.lr", "[0].data.augment.flip_p", "[0].levels"]


def test_protocol_with_two_training_sets_names_columns_by_both(study, tmp_path):
    spec, data, registry = study
    text = spec.read_text() + (
        "  - train: {name: genB, fake: {generator: [genB]}}\n"
        "    test:\n"
        "      - {name: genB, fake: {generator: [genB]}}\n"
    )
    spec.write_text(text)
    options = StudyOptions(ablations="full", registry=str(registry), bootstrap=0, progress=False)
    table = run_ablations(spec, [str(data)], tmp_path / "out", options)
    assert table.columns == ["genA -> genA", "genA -> genB", "genB -> genB"]
    assert all(table.cell("full", c, "auc").n == 1 for c in table.columns)
    row = tmp_path / "out" / "ablations" / "full" / "seed-0"
    assert (row / "genA" / "run").is_dir() and (row / "genB" / "eval" / "genB").is_dir()
