"""``mfclip card``: every section of the template is filled from a run, a model or both."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import mfclip
from mfclip.card import CardError, build_card, locate
from mfclip.cli import main
from mfclip.evaluate.runner import EvalOptions, evaluate
from mfclip.train import Trainer

from .test_train import config, make_dataset

PLACEHOLDER = re.compile(r"\{\{|\}\}|<[^>\n]*\.\.\.[^>\n]*>|\.\.\.")


def sections(card: str) -> dict[str, str]:
    parts = re.split(r"^## ", card, flags=re.M)[1:]
    return {p.splitlines()[0]: "\n".join(p.splitlines()[1:]).strip() for p in parts}


def assert_complete(card: str) -> None:
    assert not PLACEHOLDER.search(card), PLACEHOLDER.search(card)
    found = sections(card)
    expected = {"Model", "Input and preprocessing", "Training data", "Training", "Calibration"}
    expected |= {"Operating point", "Evaluation", "Robustness", "Intended use and limits"}
    assert expected | {"Not available"} == set(found)
    assert all(found.values()), [k for k, v in found.items() if not v]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A 2-epoch tiny run on 48 px images, and its evaluation with one perturbation."""
    root = tmp_path_factory.mktemp("card")
    manifest = make_dataset(root / "data")
    run = root / "run"
    Trainer(config(manifest, "seed=3", "calibration=platt"), run, progress=False).fit()
    options = EvalOptions(bootstrap=20, num_workers=0, perturb="jpeg=50", progress=False)
    evaluate(run, manifest, root / "eval", options)
    return run, root / "eval", manifest


def test_card_of_a_run_fills_every_section_from_its_files(trained):
    run, eval_dir, manifest = trained
    card = build_card(run, [eval_dir])
    assert_complete(card)
    found = sections(card)
    assert "Every section was filled." in found["Not available"]
    assert "mfclip-tiny" in found["Model"] and "random initialisation" in found["Model"]
    # Manifest counts per split x label x generator: 24/8/8 images, fakes split over 2 generators.
    assert f"Manifest `{manifest}`: 40 images" in found["Training data"]
    assert "| train | fake | DDPM | 6 |" in found["Training data"]
    assert "**Seed**: 3" in found["Training"] and "2 of 2 completed" in found["Training"]
    assert "Method `platt`" in found["Calibration"] and "| after |" in found["Calibration"]
    assert "rule `eer`" in found["Operating point"] and "probabilities" in found["Operating point"]
    assert re.search(r"\| all \| [0-9.]+ \[[0-9.]+, [0-9.]+\]", found["Evaluation"])
    assert "ECE" in found["Evaluation"] and "| jpeg=50 |" in found["Robustness"]


def test_a_checkpoint_folder_finds_its_run(trained):
    run, _, _ = trained
    model_dir, found_run = locate(run)
    assert found_run == run and model_dir.parent.name == "checkpoints"
    assert locate(model_dir) == (model_dir, run)


def test_a_bare_model_folder_says_what_is_missing(tmp_path):
    torch.manual_seed(0)
    folder = mfclip.create_model("mfclip-tiny").save_pretrained(tmp_path / "bare")
    card = build_card(folder)
    assert_complete(card)
    missing = sections(card)["Not available"]
    for what in ("training data", "calibration", "evaluation", "robustness"):
        assert what in missing
    assert "uncalibrated probabilities" in sections(card)["Operating point"]


def test_cli_writes_the_card_and_rejects_a_template_field_nothing_fills(trained, tmp_path):
    run, eval_dir, _ = trained
    out = tmp_path / "card.md"
    assert main(["card", str(run), "--eval", str(eval_dir), "--out", str(out)]) == 0
    assert_complete(out.read_text())
    bad = tmp_path / "template.md"
    bad.write_text("# {{name}}\n{{licence}}\n")
    with pytest.raises(CardError, match="licence"):
        build_card(run, template=bad)
    assert main(["card", str(tmp_path / "nowhere")]) == 1
