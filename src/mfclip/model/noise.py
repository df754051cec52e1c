"""Noise branch: richest patch -> SRM high-pass filter -> noise encoder.

The patch comes from :func:`mfclip.model.selection.select_richest_patch` (exact GLCM
homogeneity argmin, see :mod:`mfclip.model.glcm`); this module holds the fixed SRM filter of
the released code and the encoder that embeds its residual.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import NoiseConfig
from .glcm import DEFAULT_LUMA, glcm_homogeneity, quantize_gray
from .layers import TokenTransformer, vgg_stem
from .selection import patch_grid, select_richest_patch

__all__ = [
    "DEFAULT_LUMA",
    "NoiseBranch",
    "NoiseEncoder",
    "NoiseOutput",
    "SRMFilter",
    "glcm_homogeneity",
    "patch_grid",
    "quantize_gray",
    "select_richest_patch",
]


class SRMFilter(nn.Module):
    """Fixed SRM high-pass filter (three 5x5 kernels, each summed over RGB) + Hardtanh clip.

    Same kernels as the released ``SRMConv2d_simple`` (and DeepfakeBench): KB/4, KV/12 and the
    horizontal second-order kernel /2. The kernels are non-persistent buffers: they are
    constants of the method, so checkpoints neither carry nor can silently change them. They are
    stored as small integers plus denominators and divided in the input's dtype, which gives the
    correctly rounded kernel for half, float and double inputs alike (and needs no float64
    buffer, which MPS cannot hold).
    """

    kernel_num: Tensor
    kernel_den: Tensor

    def __init__(self, clip: float = 3.0) -> None:
        super().__init__()
        kb = [
            [0, 0, 0, 0, 0],
            [0, -1, 2, -1, 0],
            [0, 2, -4, 2, 0],
            [0, -1, 2, -1, 0],
            [0, 0, 0, 0, 0],
        ]
        kv = [
            [-1, 2, -2, 2, -1],
            [2, -6, 8, -6, 2],
            [-2, 8, -12, 8, -2],
            [2, -6, 8, -6, 2],
            [-1, 2, -2, 2, -1],
        ]
        hor = [[0] * 5, [0] * 5, [0, 1, -2, 1, 0], [0] * 5, [0] * 5]
        num = torch.tensor([kb, kv, hor], dtype=torch.float32)  # (3, 5, 5), exact integers
        # Each output map's kernel is repeated over the 3 input channels: (out=3, in=3, 5, 5).
        self.register_buffer("kernel_num", num[:, None].repeat(1, 3, 1, 1), persistent=False)
        self.register_buffer(
            "kernel_den", torch.tensor([4.0, 12.0, 2.0]).view(3, 1, 1, 1), persistent=False
        )
        self.clip = float(clip)

    @property
    def kernel(self) -> Tensor:
        """The ``(3, 3, 5, 5)`` convolution weight in the buffers' dtype."""
        return self.kernel_num / self.kernel_den

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` -> clipped SRM residuals ``(B, 3, H, W)`` in ``x``'s dtype."""
        weight = self.kernel_num.to(x) / self.kernel_den.to(x)
        out = F.conv2d(x, weight, stride=1, padding=2)
        return F.hardtanh(out, -self.clip, self.clip)

    def extra_repr(self) -> str:
        return f"clip={self.clip}"


class NoiseEncoder(nn.Module):
    """SRM residual patch ``(B, 3, ps, ps)`` -> noise embedding ``(B, out_dim)``.

    Conv stem, then tokens, then :class:`TokenTransformer` and a linear projection.
    ``tokens="grid"`` pools the stem output to ``grid x grid`` cells, one token each;
    ``tokens="flatten"`` is the released single token holding the whole stem output, flattened
    channels-last (``(h w c)``, the released ``rearrange`` order) so ported weights line up.
    """

    def __init__(self, cfg: NoiseConfig, out_dim: int) -> None:
        super().__init__()
        if not cfg.stem_channels:
            raise ValueError("noise.stem_channels must not be empty")
        self.tokens = cfg.tokens
        self.patch_size = cfg.patch_size
        # Released ``features_SRM``: three convolutions per stage.
        self.stem = vgg_stem([(c, 3) for c in cfg.stem_channels])
        channels = cfg.stem_channels[-1]
        # MaxPool floors at every stage; floor(floor(n/2)/2) == n // 4, so one division suffices.
        self.spatial = cfg.patch_size // 2 ** len(cfg.stem_channels)
        if cfg.tokens == "grid":
            if cfg.grid < 1:
                raise ValueError(f"noise.grid must be positive, got {cfg.grid}")
            self.pool: nn.Module = nn.AdaptiveAvgPool2d(cfg.grid)
            num_tokens, token_dim = cfg.grid * cfg.grid, channels
        elif cfg.tokens == "flatten":
            if self.spatial < 1:
                raise ValueError(
                    f"noise.patch_size {cfg.patch_size} is too small for "
                    f"{len(cfg.stem_channels)} pooling stages"
                )
            self.pool = nn.Identity()
            num_tokens, token_dim = 1, channels * self.spatial * self.spatial
        else:
            raise ValueError(f"noise.tokens must be 'grid' or 'flatten', got {cfg.tokens!r}")
        self.to_tokens = nn.Linear(token_dim, cfg.width)
        self.transformer = TokenTransformer(
            num_tokens, cfg.width, cfg.depth, cfg.heads, int(cfg.width * cfg.mlp_ratio), cfg.dropout
        )
        # The released encoder hands its class token out directly when the widths agree.
        self.proj = nn.Linear(cfg.width, out_dim) if cfg.width != out_dim else nn.Identity()

    def forward(self, srm_patches: Tensor) -> Tensor:
        """``(B, 3, ps, ps)`` SRM residuals -> ``(B, out_dim)``."""
        feats = self.stem(srm_patches)  # (B, C, h, w)
        if self.tokens == "flatten":
            if feats.shape[-2:] != (self.spatial, self.spatial):
                raise ValueError(
                    f"flatten tokens need {self.patch_size}x{self.patch_size} patches, got "
                    f"{tuple(srm_patches.shape[-2:])}"
                )
            tokens = feats.permute(0, 2, 3, 1).flatten(1)[:, None]  # (B, 1, h*w*C)
        else:
            tokens = self.pool(feats).flatten(2).transpose(1, 2)  # (B, g*g, C)
        return self.proj(self.transformer(self.to_tokens(tokens)))


@dataclass
class NoiseOutput:
    """What the noise branch produced: the embedding and, for inspection, where it looked."""

    #: ``(B, out_dim)`` noise embedding.
    embedding: Tensor
    #: ``(B, 4)`` selected patch per image, ``(x0, y0, x1, y1)`` in input pixels.
    boxes: Tensor
    #: ``(B, 3, ps, ps)`` clipped SRM residual of the selected patch.
    srm: Tensor
    #: ``(B,)`` index of the selected candidate in :func:`patch_grid` order.
    index: Tensor


class NoiseBranch(nn.Module):
    """[0, 1] images -> richest patch -> SRM -> :class:`NoiseEncoder`."""

    def __init__(self, cfg: NoiseConfig, out_dim: int) -> None:
        super().__init__()
        self.patch_size = cfg.patch_size
        self.stride = cfg.stride
        self.luma = tuple(float(v) for v in cfg.luma)
        self.select = cfg.select
        self.srm = SRMFilter(cfg.srm_clip)
        self.encoder = NoiseEncoder(cfg, out_dim)

    def forward(self, images01: Tensor) -> NoiseOutput:
        """``(B, 3, H, W)`` images in [0, 1] -> :class:`NoiseOutput`."""
        patches, boxes, index = select_richest_patch(
            images01, self.patch_size, self.stride, self.luma, self.select
        )
        srm = self.srm(patches)
        return NoiseOutput(self.encoder(srm), boxes, srm, index)
