"""Named model presets (configs as data, in the spirit of open_clip's model configs).

Each preset is a set of overrides on :class:`~mfclip.config.MFCLIPConfig`'s defaults, so a
preset file stays short and shows only what differs. Anything that expands a ``preset:`` key
lives here, because :mod:`mfclip.config` must not depend on the preset table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import ConfigError, MFCLIPConfig, deep_merge, from_dict, read_model_section, to_dict

__all__ = ["PRESETS", "config_from_yaml", "get_preset", "list_models", "register_preset"]

PRESETS: dict[str, dict[str, Any]] = {
    "mfclip-vit-b16": {
        "backbone": {"name": "openai/clip-vit-base-patch16"},
        "noise": {"width": 256, "depth": 3, "heads": 4},
    },
    "mfclip-vit-l14": {
        "backbone": {"name": "openai/clip-vit-large-patch14"},
        "noise": {"width": 384, "depth": 3, "heads": 6},
    },
    "mfclip-tiny": {
        "backbone": {"name": "tiny"},
        "noise": {"width": 32, "depth": 1, "heads": 2, "stem_channels": [8, 16]},
    },
    # Baselines in the same harness: UnivFD's linear probe (ViT-L/14, as in its paper) and
    # full fine-tuning of CLIP's image tower with cross-entropy.
    "univfd-vit-l14": {
        "variant": "linear_probe",
        "backbone": {"name": "openai/clip-vit-large-patch14"},
    },
    "clip-ft-vit-b16": {
        "variant": "clip_ft",
        "backbone": {"name": "openai/clip-vit-base-patch16"},
    },
    # The released architecture: VGG-style image branch + 1-token noise branch, trained from
    # scratch, with a ViT-B/32-sized text tower and the 308-token concatenated prompt encoder.
    # Batch-position defects (positional embeddings, SPA gate) are fixed; see docs/differences.md.
    "official": {
        "variant": "official",
        "backbone": {"name": "scratch-b32", "pretrained": False},
        "fle": {"mode": "concat"},
        "noise": {
            "tokens": "flatten",
            "width": 512,
            "depth": 3,
            "heads": 8,
            "mlp_ratio": 4.0,
            "stem_channels": [32, 64],
        },
        "official_dim": 512,
    },
}


def register_preset(name: str, overrides: dict[str, Any]) -> None:
    """Add a preset (validated at once, so a bad preset fails where it is defined)."""
    from_dict(MFCLIPConfig, deep_merge(to_dict(MFCLIPConfig()), overrides)).validate()
    PRESETS[name] = overrides


def list_models() -> list[str]:
    """Names accepted by :func:`mfclip.create_model`."""
    return sorted(PRESETS)


def get_preset(name: str) -> MFCLIPConfig:
    """The full config of a named preset."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset '{name}'; available: {', '.join(list_models())}")
    data = deep_merge(to_dict(MFCLIPConfig()), PRESETS[name])
    data["name"] = name
    return MFCLIPConfig.from_dict(data)


def config_from_yaml(path: str | Path) -> MFCLIPConfig:
    """Load a model config file; a ``model:`` section is used when present (training configs).

    A ``preset:`` key starts from that preset's full config, and the file's other keys
    override it.
    """
    data = read_model_section(path)
    preset = data.pop("preset", None)
    if preset is not None:
        data = deep_merge(get_preset(preset).to_dict(), data)
    return MFCLIPConfig.from_dict(data)
