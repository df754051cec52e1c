"""``create_model``: a model from a preset name, a config, or a YAML file, plus overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import MFCLIPConfig, apply_overrides, deep_merge
from .model.backbone import load_backbone
from .model.mfclip import MFCLIP
from .presets import PRESETS, config_from_yaml, get_preset

__all__ = ["create_model", "resolve_config"]


def resolve_config(
    name_or_config: str | Path | MFCLIPConfig,
    overrides: list[str] | None = None,
    **sections: Any,
) -> MFCLIPConfig:
    """Preset name, YAML path or config object -> validated config with overrides applied.

    ``sections`` are nested mappings (``spa={"mode": "off"}``); ``overrides`` are command-line
    style strings (``["spa.mode=off", "noise.enabled=false"]``).
    """
    if isinstance(name_or_config, MFCLIPConfig):
        config = name_or_config
    elif isinstance(name_or_config, str) and name_or_config in PRESETS:
        config = get_preset(name_or_config)
    elif Path(name_or_config).suffix in (".yaml", ".yml"):
        config = config_from_yaml(name_or_config)
    else:
        return get_preset(str(name_or_config))  # raises with the list of presets
    data = deep_merge(config.to_dict(), sections)
    if overrides:
        data = apply_overrides(data, overrides)
    return MFCLIPConfig.from_dict(data)


def create_model(
    name_or_config: str | Path | MFCLIPConfig = "mfclip-vit-b16",
    overrides: list[str] | None = None,
    **sections: Any,
) -> MFCLIP:
    """Build an MFCLIP model; the backbone is loaded by hub id, local directory or built-in name.

    The preprocessing metadata of the backbone (mean, std, input size) is copied into the
    model's config so that it travels with the saved weights.
    """
    config = resolve_config(name_or_config, overrides, **sections)
    backbone = load_backbone(config.backbone)
    if config.variant == "mfclip":
        config.preprocess = backbone.preprocess
    return MFCLIP(config.validate(), backbone)
