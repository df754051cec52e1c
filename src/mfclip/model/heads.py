"""Heads on the fused visual feature: the real/fake classifier and the KD predictor."""

from __future__ import annotations

import torch
from torch import nn

from ..config import HeadConfig

__all__ = ["ClassificationHead", "TextPredictor"]


class ClassificationHead(nn.Module):
    """LayerNorm + Linear -> 2 logits, as in the released code (LayerNorm optional)."""

    def __init__(self, dim: int, cfg: HeadConfig) -> None:
        super().__init__()
        self.norm: nn.Module = nn.LayerNorm(dim) if cfg.layernorm else nn.Identity()
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(dim, cfg.num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.norm(features)))


class TextPredictor(nn.Module):
    """Maps the visual feature into the text space so the KD loss can distil text knowledge.

    Only used in training; inference runs image -> MVE -> head with no text.
    """

    def __init__(self, visual_dim: int, text_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(visual_dim, text_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features)
