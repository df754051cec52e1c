"""Config as data: presets, YAML, overrides, and errors that name the bad field."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from mfclip.config import ConfigError, MFCLIPConfig, apply_overrides
from mfclip.factory import resolve_config
from mfclip.presets import PRESETS, config_from_yaml, get_preset, list_models


def test_every_preset_is_valid_and_named():
    assert {"mfclip-vit-b16", "mfclip-vit-l14", "mfclip-tiny", "official"} <= set(list_models())
    for name in PRESETS:
        cfg = get_preset(name)
        assert cfg.name == name


def test_official_preset_settings():
    cfg = get_preset("official")
    assert cfg.variant == "official"
    assert cfg.fle.mode == "concat"
    assert cfg.noise.tokens == "flatten"
    assert cfg.spa.mode == "content"


def test_defaults_match_released_objective():
    loss = MFCLIPConfig().loss
    assert (loss.cmc, loss.kd, loss.ce, loss.kd_temperature) == (1.0, 200.0, 1.5, 20.0)
    assert loss.kd_detach_teacher is False


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match=r"'spa\.mdoe'.*did you mean 'mode'"):
        MFCLIPConfig.from_dict({"spa": {"mdoe": "off"}})


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"spa": {"mode": "dynamic"}}, r"spa\.mode: 'dynamic' is not one of"),
        ({"noise": {"patch_size": "big"}}, r"noise\.patch_size: expected an integer"),
        ({"noise": {"enabled": "maybe"}}, r"noise\.enabled: expected true/false"),
        ({"fle": {"levels": [1, 5]}}, r"fle\.levels must be"),
        ({"fle": {"levels": [2, 3], "mode": "concat"}}, r"must start with 1"),
        ({"noise": {"patch_size": 500}}, r"larger than the input size"),
        ({"loss": {"kd": -1}}, r"loss\.kd must be >= 0"),
    ],
)
def test_invalid_values_name_the_field(data, match):
    with pytest.raises(ConfigError, match=match):
        MFCLIPConfig.from_dict(data)


def test_overrides_and_sections():
    cfg = resolve_config(
        "mfclip-tiny",
        overrides=["spa.mode=off", "noise.enabled=false", "fle.levels=[1]", "loss.kd=0"],
        fusion={"mode": "gate"},
    )
    assert cfg.spa.mode == "off" and cfg.noise.enabled is False
    assert cfg.fle.levels == [1] and cfg.loss.kd == 0.0 and cfg.fusion.mode == "gate"
    with pytest.raises(ConfigError, match="not of the form"):
        apply_overrides({}, ["spa.mode"])


def test_yaml_roundtrip_with_preset(tmp_path):
    path = tmp_path / "ablation.yaml"
    path.write_text("model:\n  preset: mfclip-tiny\n  spa:\n    mode: static\n")
    cfg = resolve_config(path)
    assert cfg.backbone.name == "tiny" and cfg.spa.mode == "static"
    assert MFCLIPConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ConfigError, match=r"available: .*mfclip-tiny"):
        resolve_config("mfclip-huge")


def test_config_from_yaml_expands_presets_and_model_sections(tmp_path):
    nested = tmp_path / "train.yaml"
    nested.write_text("model:\n  preset: official\n  spa:\n    mode: static\n")
    cfg = config_from_yaml(nested)
    assert cfg.variant == "official" and cfg.fle.mode == "concat" and cfg.spa.mode == "static"
    flat = tmp_path / "model.yaml"
    flat.write_text("noise:\n  enabled: false\n")
    cfg = config_from_yaml(flat)
    assert cfg.noise.enabled is False and cfg.name == MFCLIPConfig().name
    with pytest.raises(ConfigError, match="unknown model preset 'nope'"):
        config_from_yaml(_write(tmp_path / "bad.yaml", "preset: nope\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        config_from_yaml(_write(tmp_path / "list.yaml", "- 1\n"))
    with pytest.raises(ConfigError, match="not found"):
        config_from_yaml(tmp_path / "missing.yaml")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _imports(path: Path, package: str) -> set[str]:
    """Absolute names of everything a module imports, including inside functions."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - max(node.level - 1, 0)]
            prefix = ".".join(base) + "." if node.level else ""
            module = prefix + (node.module or "")
            out.update(f"{module.rstrip('.')}.{alias.name}" for alias in node.names)
            out.add(module.rstrip("."))
    return out


def test_config_package_never_imports_presets_or_its_own_init():
    import mfclip.config as config_pkg

    folder = Path(config_pkg.__file__).parent
    layers = {"coerce": set(), "schema": {"coerce"}, "io": {"coerce", "schema"}}
    for name, allowed in layers.items():
        imported = _imports(folder / f"{name}.py", "mfclip.config")
        assert not any(m.startswith("mfclip.presets") for m in imported), name
        own = {m.split(".")[2] for m in imported if m.startswith("mfclip.config.")}
        assert "mfclip.config" not in imported and own <= allowed, (name, own)
    code = "import sys, mfclip.config; assert 'mfclip.presets' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_names_importable_from_mfclip_config():
    import mfclip.config as config_pkg

    names = [*config_pkg.__all__, "_deep_merge"]
    assert all(hasattr(config_pkg, n) for n in names)
    assert config_pkg._deep_merge({"a": {"b": 1}}, {"a": {"c": 2}}) == {"a": {"b": 1, "c": 2}}
