"""The MFCLIP model: FLE + MVE + SPA + heads, with ``save_pretrained`` / ``from_pretrained``.

Training: ``out = model(images, tokens)`` then ``model.loss(out, labels)``; images are uint8
or float in [0, 1]. Inference needs no text: ``model.predict(images)`` returns fake
probabilities and the selected patch boxes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MFCLIPConfig
from ..errors import CheckpointError
from ..prompts import PromptBuilder
from .backbone import Backbone, clip_from_config, load_tokenizer
from .calibration import Calibration
from .fle import FineGrainedLanguageEncoder, TextTower
from .heads import ClassificationHead, TextPredictor
from .losses import LossOutput, MFCLIPLoss, SimilarityFn
from .mve import CLIPVisionEncoder, MultiModalVisionEncoder, VisualFusion
from .noise import NoiseBranch
from .persistence import CONFIG_NAME, WEIGHTS_NAME, read_saved, resolve_source, write_saved
from .selection import is_tracing
from .spa import SamplePairAttention

__all__ = ["MFCLIP", "CheckpointError", "MFCLIPOutput", "Prediction"]


class _SimilarityLogits:
    """``logits_per_image`` / ``logits_per_text``: given explicitly, else computed on first read.

    The forward pass leaves them out: training computes them in the loss (over the global batch
    under DDP), so a local matrix built in ``forward`` would be thrown away.
    """

    def __init__(self, transposed: bool) -> None:
        self.transposed = transposed

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    def __get__(self, obj: MFCLIPOutput | None, owner: type | None = None) -> torch.Tensor | None:
        if obj is None:
            return None  # the dataclass default
        given = obj.__dict__.get(self.slot)
        if given is not None:
            return given
        if self.transposed:
            per_image = obj.logits_per_image
            return None if per_image is None else per_image.t()
        if obj.scorer is None or obj.text_features is None:
            return None
        logits = obj.scorer(obj.visual_features, obj.text_features, obj.tokens)
        obj.__dict__[self.slot] = logits
        return logits

    def __set__(self, obj: MFCLIPOutput, value: torch.Tensor | None) -> None:
        obj.__dict__[self.slot] = value


@dataclass
class MFCLIPOutput:
    """Everything one forward pass produces; text fields are ``None`` without prompts.

    ``logits_per_image`` (SPA-weighted, ``(B, B)``) is computed from the features when first
    read; ``scorer`` is the model's :meth:`MFCLIP.contrastive_logits`.
    """

    logits: torch.Tensor
    visual_features: torch.Tensor
    boxes: torch.Tensor | None = None
    noise_map: torch.Tensor | None = None
    text_features: torch.Tensor | None = None
    logits_per_image: torch.Tensor | None = _SimilarityLogits(transposed=False)  # type: ignore[assignment]
    logits_per_text: torch.Tensor | None = _SimilarityLogits(transposed=True)  # type: ignore[assignment]
    predicted_text: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    scorer: SimilarityFn | None = field(default=None, repr=False, compare=False)
    calibration: Calibration | None = field(default=None, repr=False, compare=False)

    @property
    def fake_prob(self) -> torch.Tensor:
        """Calibrated p(fake) (the model's stored calibration; raw softmax when it has none)."""
        if self.calibration is None:
            return self.raw_fake_prob
        return self.calibration(self.logits)

    @property
    def raw_fake_prob(self) -> torch.Tensor:
        """The uncalibrated softmax p(fake), as ``sigmoid(margin)`` (what calibration maps)."""
        return torch.sigmoid(self.margin)

    @property
    def margin(self) -> torch.Tensor:
        """The raw logit margin ``logit_fake - logit_real`` (what calibration maps)."""
        return Calibration.margin(self.logits)


@dataclass
class Prediction:
    """Inference result: fake probability per image and the richest patch box (x0, y0, x1, y1)."""

    fake_prob: torch.Tensor
    boxes: torch.Tensor | None
    logits: torch.Tensor


def _clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DDP/DataParallel/compile prefixes and drop non-persistent ``position_ids``."""
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix) :]
        if key.endswith("position_ids"):
            continue
        out[key] = value
    return out


class MFCLIP(nn.Module):
    """Multi-modal fine-grained CLIP for face-forgery detection.

    Build it with :func:`mfclip.create_model` (named preset or config) or
    :meth:`from_pretrained` (a saved directory); the constructor takes an already loaded
    :class:`~mfclip.model.backbone.Backbone`.
    """

    def __init__(self, config: MFCLIPConfig, backbone: Backbone) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.tokenizer = backbone.tokenizer
        self.clip_config = backbone.clip.config.to_dict()
        clip = backbone.clip
        dim = config.official_dim if config.variant == "official" else clip.config.projection_dim

        self.visual = MultiModalVisionEncoder(
            self._global_encoder(config, clip, dim),
            NoiseBranch(config.noise, dim) if config.noise.enabled else None,
            VisualFusion(config.fusion, dim) if config.noise.enabled else None,
            config.preprocess.mean,
            config.preprocess.std,
        )
        self.head = ClassificationHead(dim, config.head)
        self.text: FineGrainedLanguageEncoder | None = None
        self.spa: SamplePairAttention | None = None
        self.predictor: TextPredictor | None = None
        if config.uses_text:
            tower = TextTower(
                clip.text_model, clip.text_projection, backbone.tokenizer.eos_token_id
            )
            if tower.out_dim != dim:
                raise ValueError(
                    f"text embedding size {tower.out_dim} differs from the visual size {dim}; "
                    f"choose a backbone whose projection_dim matches"
                )
            self.text = FineGrainedLanguageEncoder(config.fle, tower)
            self.spa = SamplePairAttention(config.spa)
            if config.head.predictor and config.loss.kd > 0:
                self.predictor = TextPredictor(dim, tower.out_dim)
        # Unused without text: frozen, so optimisers and DDP do not wait for its gradient.
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(config.loss.logit_scale_init)), requires_grad=config.uses_text
        )
        self.criterion = MFCLIPLoss(config.loss)
        self.prompt_builder = PromptBuilder()
        #: What training recorded with the weights: decision threshold, validation metrics.
        #: logits -> calibrated p(fake); set from ``training_info["calibration"]``.
        self.calibration = Calibration()
        self.training_info: dict[str, Any] = {}
        self._apply_freezing()

    @staticmethod
    def _global_encoder(config: MFCLIPConfig, clip: nn.Module, dim: int) -> nn.Module:
        if config.variant == "official":
            from .official import OfficialGlobalEncoder

            return OfficialGlobalEncoder(dim=dim, image_size=config.preprocess.image_size)
        return CLIPVisionEncoder(clip.vision_model, clip.visual_projection)

    def _apply_freezing(self) -> None:
        if self.config.lora.enabled:
            from .lora import apply_lora

            towers = []
            if isinstance(self.visual.global_encoder, CLIPVisionEncoder):
                towers.append(self.visual.global_encoder.vision_model)
            if self.text is not None:
                towers.append(self.text.tower.text_model)
            apply_lora(towers, self.config.lora)
        bb = self.config.backbone
        if bb.freeze_vision and isinstance(self.visual.global_encoder, CLIPVisionEncoder):
            self.visual.global_encoder.requires_grad_(False)
        if bb.freeze_text and self.text is not None:
            self.text.tower.requires_grad_(False)

    # ------------------------------------------------------------------ prompts
    @property
    def levels(self) -> list[int]:
        return list(self.config.fle.levels)

    def tokenize_prompts(self, prompts: Sequence[Sequence[str]]) -> torch.Tensor:
        """Per-sample lists of level prompts -> token ids ``(B, L, T)`` on the CPU."""
        num_levels, length = len(self.levels), self.config.fle.context_length
        flat = [p for sample in prompts for p in sample]
        if any(len(sample) != num_levels for sample in prompts):
            raise ValueError(f"each sample needs {num_levels} prompts (levels {self.levels})")
        enc = self.tokenizer(
            flat, padding="max_length", truncation=True, max_length=length, return_tensors="pt"
        )
        return enc["input_ids"].view(len(prompts), num_levels, length)

    def build_prompts(
        self,
        labels: Sequence[Any],
        forgery_types: Sequence[Any] | None = None,
        families: Sequence[Any] | None = None,
        generators: Sequence[Any] | None = None,
    ) -> torch.Tensor:
        """Prompt tokens ``(B, L, T)`` from per-sample label columns (the reference's L1-L4)."""
        n = len(labels)
        ft, fam, gen = (
            list(x) if x is not None else [None] * n for x in (forgery_types, families, generators)
        )
        prompts = [
            self.prompt_builder.build(labels[i], ft[i], fam[i], gen[i], self.levels)
            for i in range(n)
        ]
        return self.tokenize_prompts(prompts)

    # ------------------------------------------------------------------ forward
    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def forward(self, images: torch.Tensor, tokens: torch.Tensor | None = None) -> MFCLIPOutput:
        """Images ``(B, 3, H, W)``, uint8 or float in [0, 1], and optional prompt tokens.

        Normalisation for the backbone happens inside (see :meth:`normalize`), so the noise
        branch analyses exactly the decoded pixels. Tokens are ``(B, L, T)`` prompt ids.
        """
        images01 = self.to_unit_range(images)
        mve = self.visual(images01)
        visual = F.normalize(mve.features, dim=-1)
        out = MFCLIPOutput(
            logits=self.head(visual),
            visual_features=visual,
            boxes=mve.boxes,
            noise_map=mve.noise_map,
            calibration=self.calibration,
        )
        if tokens is None or self.text is None:
            return out
        tokens = tokens.to(images01.device)
        # No logits here: the loss scores the features (over every rank's batch under DDP) and
        # out.logits_per_image computes them on demand.
        out.text_features = self.text(tokens)
        out.tokens = tokens
        out.scorer = self.contrastive_logits
        if self.predictor is not None:
            out.predicted_text = self.predictor(visual)
        return out

    def contrastive_logits(
        self, visual: torch.Tensor, text: torch.Tensor, tokens: torch.Tensor | None
    ) -> torch.Tensor:
        """SPA-weighted image-text logits ``(B, B)`` from normalised visual and raw text features.

        Separate from :meth:`forward` so the loss can call it on features gathered from every
        rank (the contrastive term then sees the global batch, see :mod:`.losses`).
        """
        scale = self.logit_scale.clamp(max=math.log(self.config.loss.logit_scale_max)).exp()
        logits = scale * visual @ F.normalize(text, dim=-1).t()
        return self.spa(logits, tokens)

    def loss(self, out: MFCLIPOutput, labels: torch.Tensor) -> LossOutput:
        """The weighted MFCLIP objective (see :mod:`mfclip.model.losses`).

        Under DDP call it on every rank each step: the contrastive term gathers all ranks'
        features with collectives.
        """
        return self.criterion(out, labels.to(out.logits.device))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """Fake probability and richest-patch box per image; runs in eval mode, no text."""
        was_training = self.training
        self.eval()
        try:
            out = self(images.to(self.device))
        finally:
            self.train(was_training)
        return Prediction(fake_prob=out.fake_prob, boxes=out.boxes, logits=out.logits)

    def set_calibration(self, spec: dict[str, Any] | None) -> None:
        """Apply a calibration (see :mod:`mfclip.model.calibration`) and record it for saving."""
        self.calibration.load(spec)
        if spec is None:
            self.training_info.pop("calibration", None)
        else:
            self.training_info["calibration"] = self.calibration.to_dict()

    @property
    def threshold(self) -> float:
        """Decision threshold on p(fake), fixed on validation data by training (else 0.5)."""
        return float(self.training_info.get("threshold", 0.5))

    def to_unit_range(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32 in [0, 1] (``x / 255``, as the decoders' ``to_tensor``).

        Float input must already be in [0, 1]: CLIP-normalised input (the convention of
        mfclip < 0.2) is refused with a message rather than scored wrongly.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (batch, 3, H, W), got {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            return images.to(self.device, torch.float32) / 255.0
        if not images.is_floating_point():
            raise TypeError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
        if not is_tracing() and images.numel():
            low, high = torch.aminmax(images.detach())
            if float(low) < -1e-3 or float(high) > 1.0 + 1e-3:
                raise ValueError(
                    f"float images must lie in [0, 1] (got values in [{float(low):.3g}, "
                    f"{float(high):.3g}]); the model normalises inside: pass raw [0, 1] or uint8 "
                    "pixels, not CLIP-normalised ones"
                )
        return images

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB images -> the backbone's normalised input (what the CLIP tower sees)."""
        return self.visual.normalize(images01)

    def param_counts(self) -> dict[str, int]:
        """Parameters per component (for reports and the docs)."""
        parts = {
            "vision.global": self.visual.global_encoder,
            "vision.noise": self.visual.noise,
            "vision.fusion": self.visual.fusion,
            "text": self.text,
            "spa": self.spa,
            "head": self.head,
            "predictor": self.predictor,
        }
        counts = {
            k: sum(p.numel() for p in m.parameters()) if m is not None else 0
            for k, m in parts.items()
        }
        counts["logit_scale"] = 1
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json``, ``model.safetensors``, tokenizer and preprocessing metadata.

        The folder is written atomically with the umask's permissions (see
        :func:`mfclip.model.persistence.write_saved`).
        """
        pre = self.config.preprocess
        processor = {
            "image_processor_type": "CLIPImageProcessor",
            "size": {"shortest_edge": pre.resize},
            "crop_size": {"height": pre.image_size, "width": pre.image_size},
            "image_mean": pre.mean,
            "image_std": pre.std,
            "interpolation": pre.interpolation,
        }
        meta = {
            "model": self.config.to_dict(),
            "clip_config": self.clip_config,
            "training": self.training_info,
        }
        state = {k: v.detach().cpu().contiguous().clone() for k, v in self.state_dict().items()}
        return write_saved(
            directory,
            meta,
            state,
            {"preprocessor_config.json": json.dumps(processor, indent=2) + "\n"},
            self.tokenizer,
        )

    @classmethod
    def from_pretrained(
        cls, source: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> MFCLIP:
        """Load a model folder, a training run folder (its best checkpoint) or a hub repo id.

        Every failure is a :class:`CheckpointError` that names the file and the fix.
        """
        saved = read_saved(resolve_source(source))
        try:
            config = MFCLIPConfig.from_dict(saved.config)
        except ValueError as exc:
            raise CheckpointError(f"{saved.directory / CONFIG_NAME}: {exc}") from None
        clip = clip_from_config(saved.clip_config)
        tokenizer = load_tokenizer(saved.directory)
        backbone = Backbone(clip, tokenizer, config.preprocess, str(saved.directory))
        model = cls(config, backbone)
        model.load_weights(saved.state, source=str(saved.directory / WEIGHTS_NAME))
        model.training_info = saved.training
        try:
            model.calibration.load(model.training_info.get("calibration"))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{saved.directory / CONFIG_NAME}: bad training.calibration ({exc}); refit it "
                "with 'mfclip calibrate'"
            ) from None
        return model.to(map_location)

    def load_weights(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Strict load with clear errors; tolerates ``module.`` prefixes and ``position_ids``."""
        state = _clean_state_dict(state)
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = [
            f"{k}: saved {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            for k in own
            if k in state and state[k].shape != own[k].shape
        ]
        if missing or unexpected or shapes:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
            if shapes:
                parts.append(f"{len(shapes)} with other shapes (e.g. {'; '.join(shapes[:3])})")
            raise CheckpointError(
                f"{source} does not match the architecture '{self.config.name}' "
                f"(variant={self.config.variant}): {', '.join(parts)}. Was it saved from another "
                f"preset or config?"
            )
        self.load_state_dict(state, strict=True)
