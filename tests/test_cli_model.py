"""The model commands of the CLI, run in-process."""

from __future__ import annotations

import json

import pytest
import yaml

from mfclip import __version__
from mfclip.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_models_lists_presets(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "mfclip-tiny" in out and "official" in out


def test_create_then_info(tmp_path, capsys):
    assert (
        main(["model", "create", "mfclip-tiny", "--out", str(tmp_path / "m"), "spa.mode=off"]) == 0
    )
    capsys.readouterr()
    assert main(["model", "info", str(tmp_path / "m"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["spa"]["mode"] == "off"
    assert info["parameters"]["total"] == sum(
        v for k, v in info["parameters"].items() if k != "total"
    )


def test_config_show_applies_overrides(capsys):
    assert main(["config", "show", "mfclip-tiny", "noise.enabled=false", "fle.levels=[1, 2]"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)["model"]
    assert cfg["noise"]["enabled"] is False and cfg["fle"]["levels"] == [1, 2]


def test_bad_override_is_one_clear_error(capsys):
    assert main(["config", "show", "mfclip-tiny", "spa.mood=off"]) == 1
    err = capsys.readouterr().err
    assert "unknown config key 'spa.mood'" in err and "Traceback" not in err


def test_info_on_a_training_run_folder(tmp_path, capsys):
    """`model info` takes what `detect --model` takes: here a run folder's best checkpoint."""
    import mfclip

    run = tmp_path / "run"
    mfclip.create_model("mfclip-tiny").save_pretrained(run / "checkpoints" / "epoch-001")
    (run / "best.json").write_text(json.dumps({"checkpoint": "checkpoints/epoch-001"}))
    assert main(["model", "info", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model mfclip-tiny") and "total" in out and "input 224px" in out


def test_info_on_a_missing_path_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["model", "info", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and str(missing) in err


def test_help_imports_no_heavy_library():
    """Command modules import torch & co. inside their functions, so `mfclip --help` is fast."""
    import subprocess
    import sys

    code = (
        "import sys; from mfclip.cli import build_parser; build_parser(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'transformers', 'numpy', 'PIL', 'cv2', 'yaml', 'fastapi'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_face_option_defaults_are_the_data_faces_defaults():
    """detect/serve --faces must crop as ``data faces`` does (the CLI keeps numpy-free copies)."""
    from mfclip.cli.common import FACE_MARGIN, FACE_SIZE
    from mfclip.data.faces.crop import DEFAULT_MARGIN, DEFAULT_SIZE
    from mfclip.data.faces.extract import FaceOptions
    from mfclip.inference.prepare import FaceSettings

    assert (FACE_MARGIN, FACE_SIZE) == (DEFAULT_MARGIN, DEFAULT_SIZE)
    assert (FaceOptions().margin, FaceOptions().size) == (DEFAULT_MARGIN, DEFAULT_SIZE)
    assert (FaceSettings().margin, FaceSettings().size) == (DEFAULT_MARGIN, DEFAULT_SIZE)
