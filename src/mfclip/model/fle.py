"""FLE, the fine-grained language encoder: hierarchical prompts -> one language feature.

Input is a ``(B, L, T)`` tensor of token ids: L prompt levels of T tokens per sample. Identical
token rows in a batch are encoded once (a batch typically holds a handful of distinct prompts),
then scattered back, so the text tower's cost follows the number of distinct prompts, not B*L.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import FLEConfig

__all__ = ["FineGrainedLanguageEncoder", "LevelFusion", "TextTower", "encode_unique"]


class TextTower(nn.Module):
    """CLIP's text transformer plus projection: token ids ``(N, T)`` -> embeddings ``(N, D)``."""

    def __init__(
        self, text_model: nn.Module, text_projection: nn.Module, eos_token_id: int
    ) -> None:
        super().__init__()
        self.text_model = text_model
        self.text_projection = text_projection
        self.eos_token_id = int(eos_token_id)

    @property
    def width(self) -> int:
        return self.text_model.config.hidden_size

    @property
    def out_dim(self) -> int:
        return self.text_projection.out_features

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        pooled = self.text_model(input_ids=input_ids).pooler_output
        return self.text_projection(pooled)


def encode_unique(encode: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """``encode(rows)`` computed once per distinct row of ``rows`` (N, T), result in row order."""
    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
    return encode(unique)[inverse]


class LevelFusion(nn.Module):
    """Combines L level embeddings ``(B, L, D)`` into ``(B, D)``.

    ``weighted``: softmax-normalised learned level weights (start uniform), so every level
    contributes with a positive weight from the first step; ``mean``: fixed uniform weights;
    ``mlp``: the mean plus a zero-initialised linear correction over the concatenated levels.
    """

    def __init__(self, mode: str, num_levels: int, dim: int) -> None:
        super().__init__()
        self.mode = mode
        self.level_logits = nn.Parameter(torch.zeros(num_levels)) if mode == "weighted" else None
        self.mix: nn.Linear | None = None
        if mode == "mlp":
            self.mix = nn.Linear(num_levels * dim, dim)
            nn.init.zeros_(self.mix.weight)
            nn.init.zeros_(self.mix.bias)

    def level_weights(self, num_levels: int, device: torch.device) -> torch.Tensor:
        if self.level_logits is not None:
            return self.level_logits.softmax(0)
        return torch.full((num_levels,), 1.0 / num_levels, device=device)

    def forward(self, levels: torch.Tensor) -> torch.Tensor:
        weights = self.level_weights(levels.shape[1], levels.device).to(levels.dtype)
        fused = torch.einsum("bld,l->bd", levels, weights)
        if self.mix is not None:
            fused = fused + self.mix(levels.flatten(1))
        return fused


class FineGrainedLanguageEncoder(nn.Module):
    """Encodes the prompt levels of each sample so that every level changes the feature.

    ``mode=levels`` (default): each level is a separate CLIP text sequence with CLIP's own
    positions; the level embeddings are fused by :class:`LevelFusion`.
    ``mode=concat``: the released code's encoder. The levels are concatenated into one
    ``L*T``-token sequence (positional table: CLIP's T positions tiled L times), run under a
    causal mask and pooled at the end-of-text token of L1. Because of the causal mask, levels
    2..L can never reach that position: kept only to compare with the released behaviour.
    """

    def __init__(self, cfg: FLEConfig, tower: TextTower) -> None:
        super().__init__()
        self.mode = cfg.mode
        self.num_levels = len(cfg.levels)
        self.context_length = cfg.context_length
        self.tower = tower
        self.fusion: LevelFusion | None = None
        self.concat_positions: nn.Parameter | None = None
        if cfg.mode == "levels":
            self.fusion = LevelFusion(cfg.fusion, self.num_levels, tower.out_dim)
        else:
            table = tower.text_model.embeddings.position_embedding.weight.detach()
            if table.shape[0] < cfg.context_length:
                raise ValueError(
                    f"fle.context_length={cfg.context_length} exceeds the text tower's "
                    f"{table.shape[0]} positions"
                )
            tiled = table[: cfg.context_length].repeat(self.num_levels, 1)
            self.concat_positions = nn.Parameter(tiled.clone())
            # CLIP's own position table is replaced by the tiled one: freeze it so that it is
            # not an unused trainable parameter (DDP would wait for its gradient).
            tower.text_model.embeddings.position_embedding.requires_grad_(False)

    @property
    def out_dim(self) -> int:
        return self.tower.out_dim

    def _check(self, tokens: torch.Tensor) -> None:
        if tokens.dim() != 3:
            raise ValueError(
                f"prompt tokens must be (batch, levels, length), got {tuple(tokens.shape)}"
            )
        if tokens.shape[1] != self.num_levels or tokens.shape[2] != self.context_length:
            raise ValueError(
                f"expected prompt tokens of shape (B, {self.num_levels}, {self.context_length}), "
                f"got {tuple(tokens.shape)}; tokenize with model.tokenize_prompts"
            )

    def encode_levels(self, tokens: torch.Tensor) -> torch.Tensor:
        """Per-level embeddings ``(B, L, D)`` (``levels`` mode)."""
        b, n, t = tokens.shape
        return encode_unique(self.tower, tokens.reshape(b * n, t)).view(b, n, -1)

    def _encode_concat(self, rows: torch.Tensor) -> torch.Tensor:
        text_model = self.tower.text_model
        length = rows.shape[1]
        embeds = text_model.embeddings.token_embedding(rows) + self.concat_positions[:length]
        causal = torch.full((length, length), float("-inf"), device=rows.device, dtype=embeds.dtype)
        causal = causal.triu(1)[None, None]
        hidden = text_model.encoder(inputs_embeds=embeds, attention_mask=causal)
        hidden = text_model.final_layer_norm(
            hidden[0] if isinstance(hidden, tuple) else hidden.last_hidden_state
        )
        first_level = rows[:, : self.context_length]
        is_eos = first_level == self.tower.eos_token_id
        # First end-of-text of L1 (pad may equal eos); fall back to the highest id, like CLIP.
        eos = torch.where(is_eos.any(1), is_eos.int().argmax(1), first_level.argmax(1))
        pooled = hidden[torch.arange(rows.shape[0], device=rows.device), eos]
        return self.tower.text_projection(pooled)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Language feature ``(B, D)`` (not normalised) for prompt tokens ``(B, L, T)``."""
        self._check(tokens)
        if self.mode == "levels":
            return self.fusion(self.encode_levels(tokens))
        rows = tokens.reshape(tokens.shape[0], -1)
        return encode_unique(self._encode_concat, rows)
