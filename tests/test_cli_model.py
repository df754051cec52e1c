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
