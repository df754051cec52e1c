"""Shared building blocks: a small pre-norm transformer over a token sequence."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["TokenTransformer", "vgg_stem"]


class TokenTransformer(nn.Module):
    """Class token + learned positional embedding per token position + pre-norm transformer.

    The positional embedding is indexed by the token's position in the sequence, never by the
    sample's slot in the batch (the released code's defect 4), so a sample's output does not
    depend on its neighbours. Returns the class token's output, ``(B, dim)``.
    """

    def __init__(
        self,
        num_tokens: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_dim: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.zeros(1, num_tokens + 1, dim))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.pos_embedding, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=heads,
            dim_feedforward=mlp_dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] + 1 != self.pos_embedding.shape[1]:
            raise ValueError(
                f"expected {self.pos_embedding.shape[1] - 1} tokens, got {tokens.shape[1]}"
            )
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1) + self.pos_embedding
        x = self.encoder(x)
        return self.norm(x[:, 0])


def vgg_stem(stages: Sequence[tuple[int, int]], in_channels: int = 3) -> nn.Sequential:
    """Per ``(channels, convs)`` stage: ``convs`` x (Conv3x3 + BN + ReLU), then MaxPool 2x2.

    The released code's VGG-style blocks (its noise stem ``features_SRM`` and the official
    global encoder); the module layout (and so the state-dict keys) is theirs.
    """
    layers: list[nn.Module] = []
    cin = in_channels
    for cout, convs in stages:
        for _ in range(convs):
            layers += [
                nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
            cin = cout
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)
