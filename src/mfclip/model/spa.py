"""SPA, sample pair attention: re-weights the negatives of the image-text similarity matrix.

In a forgery batch many samples share prompts (every real image has the same ones), so plain
contrastive learning pushes apart pairs that are in fact positives, and treats a real/fake pair
no differently from two fakes of sibling generators. :class:`SamplePairAttention` derives a
weight for each negative pair from its content, the prompt levels the two samples share:

* identical prompts (false negatives): removed (weight 0) when ``mask_identical``;
* opposite labels (L1 differs): ``opposite_weight`` (> 1 emphasises them);
* same label sharing k of L levels: ``related_weight ** (k - 1)`` (closer relatives count less);
* positives (the diagonal) are left alone.

Weights act on the softmax denominators: ``logit_ij + log w_ij``, which is exactly a weighted
sum of negatives in InfoNCE. They are fixed functions of content, not learned: a weight learned
against the same loss would simply learn to drop every negative. Because the weights depend only
on the pair's prompts, permuting the batch permutes the output the same way, and any batch size
(1 included) works.

``mode=static`` reproduces the released code: a learnable ``size x size`` matrix gated with a
sigmoid and multiplied onto the logits, indexed by batch slot (initialised deterministically,
where the released code left it uninitialised). It depends on batch position by construction.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import SPAConfig

__all__ = ["SamplePairAttention", "pair_relations"]


def pair_relations(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt tokens ``(B, L, T)`` -> shared-level counts ``(B, B)`` and same-L1 mask ``(B, B)``."""
    same_level = (tokens[:, None] == tokens[None, :]).all(-1)  # (B, B, L)
    return same_level.sum(-1), same_level[..., 0]


class SamplePairAttention(nn.Module):
    """Applies SPA to ``logits_per_image`` ``(B, B)``; returns the re-weighted logits."""

    def __init__(self, cfg: SPAConfig) -> None:
        super().__init__()
        self.mode = cfg.mode
        self.opposite_weight = cfg.opposite_weight
        self.related_weight = cfg.related_weight
        self.mask_identical = cfg.mask_identical
        self.gate: nn.Parameter | None = None
        if cfg.mode == "static":
            self.gate = nn.Parameter(
                torch.full((cfg.static_size, cfg.static_size), cfg.static_init)
            )
        if cfg.opposite_weight <= 0 or cfg.related_weight <= 0:
            raise ValueError("spa.opposite_weight and spa.related_weight must be > 0")

    def log_weights(self, tokens: torch.Tensor) -> torch.Tensor:
        """Additive log-weights ``(B, B)`` for the content mode (0 on the diagonal)."""
        shared, same_label = pair_relations(tokens)
        num_levels = tokens.shape[1]
        related = (shared.clamp(min=1) - 1).to(torch.float32) * math.log(self.related_weight)
        opposite = torch.full_like(related, math.log(self.opposite_weight))
        bias = torch.where(same_label, related, opposite)
        if self.mask_identical:
            bias = bias.masked_fill(shared == num_levels, float("-inf"))
        eye = torch.eye(tokens.shape[0], dtype=torch.bool, device=tokens.device)
        return bias.masked_fill(eye, 0.0)

    def forward(self, logits: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        if self.mode == "off":
            return logits
        if self.mode == "static":
            b = logits.shape[0]
            if b > self.gate.shape[0]:
                raise ValueError(
                    f"spa.mode=static supports batches of at most {self.gate.shape[0]} "
                    f"(spa.static_size), got {b}"
                )
            return logits * torch.sigmoid(self.gate[:b, :b]).to(logits.dtype)
        if tokens is None:
            raise ValueError("spa.mode=content needs the prompt tokens of the batch")
        return logits + self.log_weights(tokens).to(logits.dtype)
