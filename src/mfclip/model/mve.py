"""MVE, the multi-modal vision encoder: global image embedding + noise embedding, fused.

The global branch is CLIP's vision tower (or the released VGG-style encoder for
``variant: official``); the noise branch looks at the SRM residual of the texture-richest patch.
Everything runs batched on the input's device. The encoder takes images in [0, 1] (or uint8)
and normalises them for the global branch itself, so the noise branch sees the decoded pixels
exactly: no normalise/un-normalise float round trip shifts a grey level or the chosen patch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import FusionConfig
from .noise import NoiseBranch

__all__ = ["CLIPVisionEncoder", "MVEOutput", "MultiModalVisionEncoder", "VisualFusion"]


class CLIPVisionEncoder(nn.Module):
    """CLIP's vision transformer plus projection: pixels -> projected embedding ``(B, D)``."""

    def __init__(self, vision_model: nn.Module, visual_projection: nn.Module) -> None:
        super().__init__()
        self.vision_model = vision_model
        self.visual_projection = visual_projection

    @property
    def out_dim(self) -> int:
        return self.visual_projection.out_features

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output
        return self.visual_projection(pooled)


class VisualFusion(nn.Module):
    """Fuses global and noise embeddings.

    ``sum`` is the released code's choice. ``concat`` learns a linear map of both, initialised
    to the sum. ``gate`` learns a per-channel sigmoid gate ``g`` and returns ``g*global +
    (1-g)*noise`` scaled by 2 so that, at initialisation (g = 0.5), it also equals the sum.
    """

    def __init__(self, cfg: FusionConfig, dim: int) -> None:
        super().__init__()
        self.mode = cfg.mode
        self.proj: nn.Linear | None = None
        self.gate: nn.Linear | None = None
        if cfg.mode == "concat":
            self.proj = nn.Linear(2 * dim, dim)
            with torch.no_grad():
                self.proj.weight.copy_(torch.cat([torch.eye(dim), torch.eye(dim)], dim=1))
                self.proj.bias.zero_()
        elif cfg.mode == "gate":
            self.gate = nn.Linear(2 * dim, dim)
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)

    def forward(self, global_feat: torch.Tensor, noise_feat: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            return self.proj(torch.cat([global_feat, noise_feat], dim=-1))
        if self.gate is not None:
            g = torch.sigmoid(self.gate(torch.cat([global_feat, noise_feat], dim=-1)))
            return 2 * (g * global_feat + (1 - g) * noise_feat)
        return global_feat + noise_feat


@dataclass
class MVEOutput:
    """Fused feature (not normalised), the two branch features, and the selected patch."""

    features: torch.Tensor
    global_features: torch.Tensor
    noise_features: torch.Tensor | None
    boxes: torch.Tensor | None
    noise_map: torch.Tensor | None


class MultiModalVisionEncoder(nn.Module):
    """Global branch + optional noise branch + fusion."""

    def __init__(
        self,
        global_encoder: nn.Module,
        noise: NoiseBranch | None,
        fusion: VisualFusion | None,
        mean: list[float],
        std: list[float],
    ) -> None:
        super().__init__()
        self.global_encoder = global_encoder
        self.noise = noise
        self.fusion = fusion
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB -> the backbone's normalised input ``(x - mean) / std``."""
        return (images01 - self.mean.to(images01.dtype)) / self.std.to(images01.dtype)

    def forward(self, images01: torch.Tensor) -> MVEOutput:
        """``(B, 3, H, W)`` float images in [0, 1] -> fused features and the selected patch."""
        global_feat = self.global_encoder(self.normalize(images01))
        if self.noise is None:
            return MVEOutput(global_feat, global_feat, None, None, None)
        noise = self.noise(images01)
        fused = self.fusion(global_feat, noise.embedding.to(global_feat.dtype))
        return MVEOutput(fused, global_feat, noise.embedding, noise.boxes, noise.srm)
