"""Model configuration as data: one dataclass per component, and their cross-field checks.

Every MFCLIP component has a switch here so that ablations are a config change, never a code
change. The ``#:`` comment above each field is its documentation: the configuration
reference (``docs/config.md``) is generated from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from ..fileio import atomic_write_text
from .coerce import from_dict, to_dict

__all__ = [
    "BASELINE_SWITCHES",
    "BackboneConfig",
    "FLEConfig",
    "FusionConfig",
    "HeadConfig",
    "LoRAConfig",
    "LossConfig",
    "MFCLIPConfig",
    "NoiseConfig",
    "PreprocessConfig",
    "SPAConfig",
]


@dataclass
class BackboneConfig:
    """Where the CLIP towers come from.

    ``name`` is a Hugging Face hub id (``openai/clip-vit-base-patch16``), a local directory
    saved with ``CLIPModel.save_pretrained``, or a built-in offline backbone: ``tiny`` (a few
    random layers, for tests and the demo) or ``scratch-b32`` (ViT-B/32-sized text tower,
    random init, as in the released code).
    """

    #: Hub id, local directory, or built-in backbone (``tiny``, ``scratch-b32``).
    name: str = "openai/clip-vit-base-patch16"
    #: Hub revision (branch, tag or commit) for reproducible downloads.
    revision: str | None = None
    #: Load weights (``True``) or only the architecture from the hub config (``False``).
    pretrained: bool = True
    #: Freeze the CLIP text tower (``requires_grad=False``).
    freeze_text: bool = False
    #: Freeze the CLIP vision tower (``requires_grad=False``).
    freeze_vision: bool = False


@dataclass
class FLEConfig:
    """Fine-grained language encoder.

    ``mode: levels`` encodes each prompt level with CLIP's own 77 positions and fuses the level
    embeddings; ``mode: concat`` reproduces the released code (four levels concatenated into one
    308-token causal sequence pooled at the end of L1, so levels 2-4 cannot matter).
    """

    #: Use the language branch (off: no L_cmc / L_kd, image-only training).
    enabled: bool = True
    #: ``levels`` (each level encoded separately) or ``concat`` (released).
    mode: Literal["levels", "concat"] = "levels"
    #: Which prompt levels (1-based) are built and encoded; ``[1]`` is the L1-only ablation.
    levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    #: How level embeddings are combined in ``levels`` mode.
    fusion: Literal["weighted", "mean", "mlp"] = "weighted"
    #: Tokens per prompt level (CLIP: 77).
    context_length: int = 77


@dataclass
class NoiseConfig:
    """Noise branch: richest-patch selection, SRM filtering and the noise encoder."""

    #: Use the noise branch (off: the global CLIP embedding alone).
    enabled: bool = True
    #: Side of the candidate patches in input pixels (released: 112 on 224).
    patch_size: int = 112
    #: Stride between candidate patches; ``None`` means ``patch_size`` (non-overlapping).
    stride: int | None = None
    #: Luma weights for the grey image used by the GLCM (released code: 0.299/0.587/0.114).
    luma: list[float] = field(default_factory=lambda: [0.299, 0.587, 0.114])
    #: ``argmin`` homogeneity = texture-richest (released); ``argmax`` for the ablation.
    select: Literal["argmin", "argmax"] = "argmin"
    #: Hardtanh bound applied to the SRM residuals (released: 3).
    srm_clip: float = 3.0
    #: ``grid``: conv stem then one token per cell; ``flatten``: the released single token.
    tokens: Literal["grid", "flatten"] = "grid"
    #: Channels of the conv stem stages (3 conv + max-pool each; released: 32, 64).
    stem_channels: list[int] = field(default_factory=lambda: [32, 64])
    #: Width of the noise transformer.
    width: int = 256
    #: Layers of the noise transformer (released: 3).
    depth: int = 3
    #: Attention heads of the noise transformer.
    heads: int = 4
    #: Feed-forward width as a multiple of ``width``.
    mlp_ratio: float = 4.0
    #: Side of the token grid in ``grid`` mode (the stem output is pooled to it).
    grid: int = 7
    #: Dropout inside the noise transformer.
    dropout: float = 0.0


@dataclass
class FusionConfig:
    """How the global and noise embeddings become one visual feature."""

    #: ``sum`` (released), ``concat`` (linear over both), ``gate`` (learned per-channel gate).
    mode: Literal["sum", "concat", "gate"] = "sum"


@dataclass
class SPAConfig:
    """Sample pair attention on the image-text similarity matrix.

    ``content``: negatives are re-weighted from what their prompts share (see
    :mod:`mfclip.model.spa`); ``static``: the released learnable ``size x size`` sigmoid gate
    indexed by batch slot; ``off``: plain contrastive logits.
    """

    #: ``content`` (default), ``static`` (released gate) or ``off``.
    mode: Literal["content", "static", "off"] = "content"
    #: Weight of negatives with the opposite label (> 1 emphasises them).
    opposite_weight: float = 2.0
    #: Same-label negatives sharing k prompt levels get ``related_weight ** (k - 1)``.
    related_weight: float = 0.5
    #: Remove negatives whose prompts are identical to the positive's (false negatives).
    mask_identical: bool = True
    #: Size of the static gate matrix (released: 24, the batch size).
    static_size: int = 24
    #: Initial value of the static gate's logits (sigmoid(0) = 0.5).
    static_init: float = 0.0


@dataclass
class HeadConfig:
    """Classification head (LayerNorm + Linear -> 2) and distillation predictor."""

    #: Output classes (real, fake).
    num_classes: int = 2
    #: LayerNorm before the linear layer (released: yes; a pure linear probe: no).
    layernorm: bool = True
    #: Dropout before the classifier's linear layer.
    dropout: float = 0.0
    #: Linear map from the visual feature to the text space, needed by the KD loss.
    predictor: bool = True


@dataclass
class LossConfig:
    """Loss weights. Defaults equal the released code's effective objective.

    Released: ``(CE_i2t + CE_t2i)/2 + KLDiv(log_softmax(p/T), softmax(t/T) * a*T^2)
    + (1 - a) * CE + CE`` with ``T = 20`` and ``a = 0.5``: weight 1 on L_cmc, ``a*T^2 = 200``
    on the KL term (plus a constant ``200*log(200)`` that carries no gradient and which we
    omit), and ``1.5`` on L_ce.
    """

    #: Weight of L_cmc, the SPA-weighted image-text contrastive loss.
    cmc: float = 1.0
    #: Weight of L_kd, the KL distillation from text to predicted text.
    kd: float = 200.0
    #: Weight of L_ce, the real/fake cross-entropy.
    ce: float = 1.5
    #: Softmax temperature of L_kd (released: 20).
    kd_temperature: float = 20.0
    #: Stop gradients into the text tower through the KD teacher (released: ``False``).
    kd_detach_teacher: bool = False
    #: Initial contrastive logit scale, 1/temperature (released: 1/0.07).
    logit_scale_init: float = 1.0 / 0.07
    #: Upper clamp of the learnable logit scale (CLIP: 100).
    logit_scale_max: float = 100.0


@dataclass
class PreprocessConfig:
    """Preprocessing metadata that travels with the weights (filled from the backbone)."""

    #: Model input side in pixels (centre crop).
    image_size: int = 224
    #: Per-channel normalisation mean (CLIP's by default).
    mean: list[float] = field(default_factory=lambda: [0.48145466, 0.4578275, 0.40821073])
    #: Per-channel normalisation std (CLIP's by default).
    std: list[float] = field(default_factory=lambda: [0.26862954, 0.26130258, 0.27577711])
    #: Shortest-edge resize before the crop.
    resize: int = 224
    #: Resampling filter of the resize.
    interpolation: Literal["bicubic", "bilinear", "lanczos"] = "bicubic"


@dataclass
class LoRAConfig:
    """Low-rank adapters on the CLIP towers (``peft``); the towers' own weights are frozen."""

    #: Add LoRA adapters (needs ``pip install 'mfclip[lora]'``).
    enabled: bool = False
    #: Rank of the adapters.
    r: int = 8
    #: Scale numerator of the adapters (``alpha / r``).
    alpha: int = 16
    #: Dropout on the adapters' input.
    dropout: float = 0.0
    #: Linear layers of the CLIP towers that get adapters.
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


#: What the baseline variants fix, whatever else the config says: image-only, CE only.
BASELINE_SWITCHES: dict[str, dict[str, Any]] = {
    "linear_probe": {
        "noise.enabled": False,
        "fle.enabled": False,
        "loss.cmc": 0.0,
        "loss.kd": 0.0,
        "loss.ce": 1.0,
        "backbone.freeze_vision": True,
        "head.layernorm": False,
    },
    "clip_ft": {
        "noise.enabled": False,
        "fle.enabled": False,
        "loss.cmc": 0.0,
        "loss.kd": 0.0,
        "loss.ce": 1.0,
    },
}


@dataclass
class MFCLIPConfig:
    """The whole model: which variant and how each component is built."""

    #: Preset or user-given name, stored with saved models.
    name: str = "mfclip-vit-b16"
    #: ``mfclip`` (CLIP towers), ``official`` (released VGG-style image branch from scratch),
    #: or a baseline: ``linear_probe`` (UnivFD: frozen CLIP image tower + linear layer, CE) or
    #: ``clip_ft`` (CLIP image tower fine-tuned with CE only). Baselines pin their switches.
    variant: Literal["mfclip", "official", "linear_probe", "clip_ft"] = "mfclip"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    fle: FLEConfig = field(default_factory=FLEConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    spa: SPAConfig = field(default_factory=SPAConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    #: Width of the official variant's transformers (released: 512).
    official_dim: int = 512

    @property
    def uses_text(self) -> bool:
        """Whether training needs the language branch at all."""
        return self.fle.enabled and (self.loss.cmc > 0 or self.loss.kd > 0)

    def validate(self) -> MFCLIPConfig:
        """Check cross-field constraints (pinning baseline switches); returns ``self``."""
        if self.variant in BASELINE_SWITCHES:
            for dotted, value in BASELINE_SWITCHES[self.variant].items():
                section, key = dotted.split(".")
                setattr(getattr(self, section), key, value)
        if not self.fle.levels or any(lv not in (1, 2, 3, 4) for lv in self.fle.levels):
            raise ConfigError(
                f"fle.levels must be a non-empty subset of [1, 2, 3, 4], got {self.fle.levels}"
            )
        if len(set(self.fle.levels)) != len(self.fle.levels):
            raise ConfigError(f"fle.levels has duplicates: {self.fle.levels}")
        if self.fle.mode == "concat" and self.fle.levels[0] != 1:
            raise ConfigError(
                "fle.mode=concat pools at the end of L1, so fle.levels must start with 1"
            )
        if self.noise.patch_size > self.preprocess.image_size:
            raise ConfigError(
                f"noise.patch_size={self.noise.patch_size} is larger than the input size "
                f"{self.preprocess.image_size}"
            )
        if self.noise.stride is not None and self.noise.stride <= 0:
            raise ConfigError(f"noise.stride must be positive, got {self.noise.stride}")
        if len(self.noise.luma) != 3:
            raise ConfigError(f"noise.luma needs three weights, got {self.noise.luma}")
        if self.noise.width % self.noise.heads:
            raise ConfigError(
                f"noise.width={self.noise.width} is not divisible by noise.heads={self.noise.heads}"
            )
        for name in ("cmc", "kd", "ce"):
            if getattr(self.loss, name) < 0:
                raise ConfigError(f"loss.{name} must be >= 0")
        if self.head.num_classes != 2:
            raise ConfigError("head.num_classes must be 2 (real/fake)")
        return self

    def to_dict(self) -> dict[str, Any]:
        """A plain (JSON/YAML-serialisable) copy, as saved with the weights."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MFCLIPConfig:
        """Build and validate from a mapping; unknown keys and wrong types are errors."""
        return from_dict(cls, data).validate()

    def save_json(self, path: str | Path) -> None:
        """Write the config as sorted, indented JSON (atomically: no half-written file)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
