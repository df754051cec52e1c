"""The released MFCLIP global image branch (VGG-style CNN + transformer), with its defects fixed.

The authors' released code (``models/MVE.py`` in github.com/Jenine-321/MFCLIP) does not use
CLIP's image tower for the multi-modal vision encoder (MVE). Its global image branch is a
VGG-19-like CNN followed by a small transformer, trained from scratch. This module rebuilds
that branch so the "official architecture" can be trained and compared against the
CLIP-backbone model. The noise branch and the fusion live elsewhere
(:mod:`mfclip.model.noise`); this module only holds the global image branch.

What is reproduced
------------------
* ``VGGStem``: five stages of (Conv3x3, padding 1 -> BatchNorm2d -> ReLU) followed by a 2x2
  max-pool, with (channels, convs) per stage ``(32, 3), (64, 3), (128, 3), (256, 4),
  (512, 4)``. A 224x224 RGB image becomes a ``(B, 512, 7, 7)`` map. PyTorch default
  initialisation, as in the release.
* ``tokens="flatten"`` (default): the whole 7x7x512 map is ONE token (the release's
  ``patch_size=7``), flattened channels-last, i.e. in the release's
  ``'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'`` order (25088 values), projected by
  ``Linear(25088, dim)``; a class token is prepended, a positional embedding added, a
  transformer with ``depth=6, heads=8, mlp_dim=2048`` runs, and the class token's output is the
  image embedding. MFCLIP instantiates the MVE with ``dim=512``.

What is fixed, and why
----------------------
* Batch-position "positional" embedding (defect 4 of the reference notes). The release keeps a
  ``(24, 1, dim)`` parameter and adds ``pos_embedding[0:batch]``: the embedding is chosen by the
  sample's slot in the batch, not by token position. An image's score therefore depends on where
  it sits in the batch, and batches larger than 24 crash. Here the embedding is indexed per
  TOKEN position, shape ``(1, num_tokens + 1, dim)`` (via
  :class:`mfclip.model.layers.TokenTransformer`), so in eval mode an image's output is the same
  alone or anywhere in a batch of any size.
* Input handling (defect 5). The release takes raw ``(B, H, W, 3)`` BGR uint8 images, runs
  ``cv2.resize`` + BGR->RGB per image in Python on the CPU, moves them back with ``.cuda()``
  and applies ``permute(0, 3, 2, 1)``, which also transposes height and width; the RGB branch
  also sees unnormalised 0-255 values. Here ``forward`` takes a ``(B, 3, H, W)`` tensor of
  normalised images already on the model's device (resizing and normalisation belong to the
  data pipeline) and there is no ``.cuda()`` anywhere.

Where this differs from the release's transformer (documented, deliberate)
-------------------------------------------------------------------------
The transformer is the project's shared pre-norm :class:`~mfclip.model.layers.TokenTransformer`
(``torch.nn.TransformerEncoderLayer``), not a line-by-line copy of the release's
``Transformer``:

* attention scale: the release multiplies ``q @ k^T`` by ``dim ** -0.5`` (the full model
  width, 512 -> 1/22.6) instead of ``head_dim ** -0.5`` (64 -> 1/8), i.e. its attention logits
  are ``sqrt(heads)`` times softer than standard; ours uses the standard ``head_dim ** -0.5``;
* the release's ``to_qkv`` has no bias; ``nn.MultiheadAttention`` has a qkv bias (+3*dim
  parameters per layer);
* the release applies no final LayerNorm to the class token (``to_cls_token`` is
  ``nn.Identity``); ``TokenTransformer`` ends with a LayerNorm (+2*dim parameters);
* the release initialises class token and positional embedding with ``torch.randn`` (std 1);
  ours with std 0.02;
* the release's ``dim`` default is 1024 (MFCLIP passes 512); ours defaults to 512.

With one token plus the class token, attention in ``flatten`` mode mixes just two positions;
``tokens="grid"`` (each of the 7x7 cells a 512-d token -> ``Linear(512, dim)``, 49 tokens) is
offered as the more sensible alternative with ~49x fewer projection parameters.

Note that ``BatchNorm2d`` still couples the samples of a batch in TRAINING mode (batch
statistics); batch-position independence is a property of eval mode, as in any BN network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import TokenTransformer, vgg_stem

__all__ = [
    "RELEASED_STAGES",
    "OfficialGlobalEncoder",
    "VGGStem",
    "count_parameters",
]

#: (channels, number of 3x3 convs) per stage of the released ``features`` stack.
RELEASED_STAGES: tuple[tuple[int, int], ...] = ((32, 3), (64, 3), (128, 3), (256, 4), (512, 4))

_TOKEN_MODES = ("flatten", "grid")


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) of ``module``; buffers such as BN running stats excluded."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _check_stages(stages: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    try:
        out = [(int(c), int(n)) for c, n in stages]
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"stages must be a sequence of (channels, convs) pairs, got {stages!r}"
        ) from exc
    if not out:
        raise ValueError("stages must contain at least one (channels, convs) pair")
    for c, n in out:
        if c < 1 or n < 1:
            raise ValueError(f"stage channels and convs must be >= 1, got ({c}, {n})")
    return out


class VGGStem(nn.Module):
    """VGG-style conv stack: per stage ``convs`` x (Conv3x3 pad 1 + BN + ReLU), then MaxPool 2.

    ``stages`` lists ``(channels, convs)`` per stage; the default is the released stack, which
    maps ``(B, 3, 224, 224)`` to ``(B, 512, 7, 7)``. Each stage halves the spatial size.
    """

    def __init__(
        self,
        stages: Sequence[Sequence[int]] | None = None,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.stages = _check_stages(RELEASED_STAGES if stages is None else stages)
        self.in_channels = in_channels
        self.features = vgg_stem(self.stages, in_channels)
        self.out_channels = self.stages[-1][0] if self.stages else in_channels
        #: Total spatial downsampling factor (``2 ** num_stages``).
        self.reduction = 2 ** len(self.stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class OfficialGlobalEncoder(nn.Module):
    """The released MVE global image branch: VGG stem -> token(s) -> transformer -> class token.

    ``forward(pixel_values)`` takes normalised ``(B, 3, image_size, image_size)`` images on the
    model's device and returns ``(B, dim)``.

    ``tokens="flatten"`` reproduces the release: the whole ``C x g x g`` stem map (channels-last
    order) is one token, ``Linear(C*g*g, dim)``. ``tokens="grid"`` makes each of the ``g x g``
    cells a token, ``Linear(C, dim)``. ``g = image_size // 2**len(stages)`` (7 at release size).
    """

    def __init__(
        self,
        dim: int = 512,
        image_size: int = 224,
        depth: int = 6,
        heads: int = 8,
        mlp_dim: int = 2048,
        stages: Sequence[Sequence[int]] | None = None,
        tokens: str = "flatten",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if tokens not in _TOKEN_MODES:
            raise ValueError(f"tokens must be one of {_TOKEN_MODES}, got {tokens!r}")
        for name, value in (("dim", dim), ("depth", depth), ("heads", heads), ("mlp_dim", mlp_dim)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.stem = VGGStem(stages)
        reduction = self.stem.reduction
        if image_size < reduction or image_size % reduction:
            raise ValueError(
                f"image_size ({image_size}) must be a positive multiple of 2**num_stages "
                f"= {reduction} ({len(self.stem.stages)} stages each halve the size)"
            )
        self.dim = dim
        self.image_size = image_size
        self.tokens = tokens
        self.grid_size = image_size // reduction
        channels = self.stem.out_channels
        if tokens == "flatten":
            self.num_tokens = 1
            self.token_dim = channels * self.grid_size**2
        else:
            self.num_tokens = self.grid_size**2
            self.token_dim = channels
        self.to_embedding = nn.Linear(self.token_dim, dim)
        self.transformer = TokenTransformer(
            num_tokens=self.num_tokens,
            dim=dim,
            depth=depth,
            heads=heads,
            mlp_dim=mlp_dim,
            dropout=dropout,
        )

    @property
    def out_dim(self) -> int:
        return self.dim

    def tokenize(self, fmap: torch.Tensor) -> torch.Tensor:
        """Stem map ``(B, C, g, g)`` -> unprojected tokens ``(B, num_tokens, token_dim)``."""
        b = fmap.shape[0]
        # Channels-last: (B, g, g, C). Flattened whole = the release's (p1 p2 c) order.
        cells = fmap.permute(0, 2, 3, 1)
        if self.tokens == "flatten":
            return cells.reshape(b, 1, -1)
        return cells.reshape(b, self.num_tokens, -1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.dim() != 4 or pixel_values.shape[1] != self.stem.in_channels:
            raise ValueError(
                f"expected pixel_values of shape (B, {self.stem.in_channels}, "
                f"{self.image_size}, {self.image_size}), got {tuple(pixel_values.shape)}"
            )
        if tuple(pixel_values.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"expected {self.image_size}x{self.image_size} images (the token layout is fixed "
                f"by image_size), got {pixel_values.shape[-2]}x{pixel_values.shape[-1]}"
            )
        fmap = self.stem(pixel_values)
        tokens = self.to_embedding(self.tokenize(fmap))
        return self.transformer(tokens)
