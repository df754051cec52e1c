"""Model configuration as data: dataclasses, conversion, YAML and dotted overrides.

Every MFCLIP component has a switch here so that ablations are a config change, never a code
change. Unknown keys are errors (with a suggestion), because a silently ignored typo in an
ablation config produces a wrong table, not a crash.

Modules: :mod:`~mfclip.config.schema` (the dataclasses), :mod:`~mfclip.config.coerce`
(mapping <-> dataclass), :mod:`~mfclip.config.io` (YAML, overrides, the reference doc).
Named presets live in :mod:`mfclip.presets`, which builds on this package and is never
imported by it.
"""

from __future__ import annotations

from ..errors import ConfigError
from .coerce import deep_merge, from_dict, to_dict
from .io import apply_overrides, read_model_section, reference_markdown, set_dotted
from .schema import (
    BASELINE_SWITCHES,
    BackboneConfig,
    FLEConfig,
    FusionConfig,
    HeadConfig,
    LoRAConfig,
    LossConfig,
    MFCLIPConfig,
    NoiseConfig,
    PreprocessConfig,
    SPAConfig,
)

#: The name earlier modules import; same function as :func:`deep_merge`.
_deep_merge = deep_merge

__all__ = [
    "BASELINE_SWITCHES",
    "BackboneConfig",
    "ConfigError",
    "FLEConfig",
    "FusionConfig",
    "HeadConfig",
    "LoRAConfig",
    "LossConfig",
    "MFCLIPConfig",
    "NoiseConfig",
    "PreprocessConfig",
    "SPAConfig",
    "apply_overrides",
    "deep_merge",
    "from_dict",
    "read_model_section",
    "reference_markdown",
    "set_dotted",
    "to_dict",
]
