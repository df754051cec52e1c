"""Noise branch: texture-richest patch selection (GLCM homogeneity), SRM filter, noise encoder.

The released code picks, per image and in Python on the CPU, the 112x112 patch whose grey-level
co-occurrence matrix (distance 1, angle 0, 256 levels, symmetric, normalised) has the lowest
homogeneity, filters it with three fixed SRM high-pass kernels and encodes the residual. Here the
selection is batched on the input's device and reproduces skimage's choice exactly:

* for that GLCM, homogeneity is the mean over all horizontally adjacent pixel pairs ``(a, b)``
  inside the patch of ``1 / (1 + (a - b)^2)``, so no 256x256 matrix is needed;
* the pair weights are summed over every candidate window at once with an integral image kept in
  **int64 fixed point** (weights scaled by ``2**k``), so window sums are exact: identical patches
  tie exactly and the first one wins, like ``np.argmin``, on every device (a floating-point
  integral image would break such ties by rounding noise). The quantisation error of the weights
  is below ``2**-(k+1)`` per pair (about ``1e-14`` for 224x224 images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mfclip.config import NoiseConfig

from .layers import TokenTransformer

__all__ = [
    "NoiseBranch",
    "NoiseEncoder",
    "NoiseOutput",
    "SRMFilter",
    "glcm_homogeneity",
    "patch_grid",
    "quantize_gray",
    "select_richest_patch",
]

DEFAULT_LUMA: tuple[float, float, float] = (0.299, 0.587, 0.114)


def quantize_gray(images01: Tensor, luma: Sequence[float] = DEFAULT_LUMA) -> Tensor:
    """``(B, 3, H, W)`` images in [0, 1] -> ``(B, H, W)`` uint8 grey levels, as the released code.

    The released code computes ``0.299*r + 0.587*g + 0.114*b`` in float32 (torchvision's
    ``Grayscale``) and then ``(gray * 255).astype(np.uint8)``, i.e. truncation toward zero. The
    same float32 operations in the same order are used here so that grey levels (and hence the
    selected patch) match bit for bit; values are clamped to [0, 255] first because numpy's cast
    of out-of-range values is undefined.
    """
    if images01.ndim != 4 or images01.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images01.shape)}")
    if len(luma) != 3:
        raise ValueError(f"luma must have 3 weights, got {len(luma)}")
    x = images01.detach().to(torch.float32)
    w0, w1, w2 = (float(v) for v in luma)
    gray = (x[:, 0] * w0 + x[:, 1] * w1 + x[:, 2] * w2) * 255.0
    return gray.clamp_(0.0, 255.0).to(torch.uint8)


def patch_grid(
    height: int,
    width: int,
    patch_size: int,
    stride: int | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Candidate boxes ``(P, 4)`` as ``(x0, y0, x1, y1)``, row-major (y outer, x inner).

    Positions are ``range(0, size - patch_size + 1, stride)`` on each axis, which is the order of
    ``Tensor.unfold`` used by the released code, so index 0 is the top-left patch and ties resolve
    to the same patch as there. ``stride=None`` means non-overlapping (``stride = patch_size``).
    """
    if stride is None:
        stride = patch_size
    if patch_size < 1 or stride < 1:
        raise ValueError(f"patch_size and stride must be positive, got {patch_size}, {stride}")
    if patch_size > height or patch_size > width:
        raise ValueError(
            f"patch_size {patch_size} is larger than the image ({height}x{width}); "
            "resize the image or lower noise.patch_size"
        )
    ys = torch.arange(0, height - patch_size + 1, stride, device=device)
    xs = torch.arange(0, width - patch_size + 1, stride, device=device)
    y0, x0 = torch.meshgrid(ys, xs, indexing="ij")
    y0, x0 = y0.reshape(-1), x0.reshape(-1)
    return torch.stack([x0, y0, x0 + patch_size, y0 + patch_size], dim=1).long()


def _float_dtype(device: torch.device) -> torch.dtype:
    """float64 where the backend has it; MPS has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _pair_weight_sums(
    gray: Tensor, boxes: Tensor | Sequence[Sequence[int]]
) -> tuple[Tensor, Tensor, int]:
    """Exact fixed-point sums of pair weights per window: ``(sums (B, P) int64, pairs (P,), k)``.

    ``sums / 2**k / pairs`` is the homogeneity. Kept separate so that selection can compare the
    integer sums directly (all candidates of one grid have the same number of pairs).
    """
    if gray.ndim != 3:
        raise ValueError(f"expected grey images of shape (B, H, W), got {tuple(gray.shape)}")
    if gray.is_floating_point() or gray.is_complex() or gray.dtype == torch.bool:
        raise TypeError(f"grey images must hold integer levels 0..255, got dtype {gray.dtype}")
    device = gray.device
    boxes = torch.as_tensor(boxes, dtype=torch.long, device=device).reshape(-1, 4)
    b, h, w = gray.shape
    x0, y0, x1, y1 = boxes.unbind(1)
    if boxes.numel():
        bad = (x0 < 0) | (y0 < 0) | (x1 > w) | (y1 > h) | (y1 <= y0) | (x1 - x0 < 2)
        if bool(bad.any()):
            raise ValueError(
                f"boxes must lie inside the {h}x{w} image and be at least 2 pixels wide and "
                f"1 pixel high; offending box {boxes[bad][0].tolist()}"
            )
    # Fixed point: scale weights by 2**k with k as large as int64 allows for this image.
    total_pairs = max(h * (w - 1), 1)
    k = min(52, 62 - total_pairs.bit_length())
    if k < 16:
        raise ValueError(f"image {h}x{w} is too large for exact GLCM window sums")
    d = torch.arange(256, dtype=torch.float64)
    lut = torch.round((1.0 / (1.0 + d * d)) * 2.0**k).to(torch.int64).to(device)

    g = gray.to(torch.int16)
    diff = (g[:, :, 1:] - g[:, :, :-1]).abs().long()  # (B, H, W-1): pair (x, x+1) at column x
    weights = lut[diff]
    # Integral image with a zero row/column in front: integ[:, y, x] = sum of rows < y, cols < x.
    integ = torch.zeros((b, h + 1, w), dtype=torch.int64, device=device)
    integ[:, 1:, 1:] = weights.cumsum(1).cumsum(2)
    # Pairs of the window [y0, y1) x [x0, x1) start at columns [x0, x1 - 1).
    xe = x1 - 1
    sums = integ[:, y1, xe] - integ[:, y0, xe] - integ[:, y1, x0] + integ[:, y0, x0]
    pairs = (y1 - y0) * (xe - x0)
    return sums, pairs, k


def glcm_homogeneity(gray: Tensor, boxes: Tensor | Sequence[Sequence[int]]) -> Tensor:
    """skimage GLCM homogeneity (distance 1, angle 0, 256 levels, symmetric, normed) per window.

    ``gray`` is ``(B, H, W)`` with integer levels 0..255 (uint8), ``boxes`` ``(P, 4)`` as
    ``(x0, y0, x1, y1)``; returns ``(B, P)`` in float64 (float32 on MPS), computed for all
    images and windows at once on ``gray``'s device. Equals
    ``graycoprops(graycomatrix(patch, [1], [0], 256, symmetric=True, normed=True),
    'homogeneity')[0, 0]`` up to ~1e-14.
    """
    sums, pairs, k = _pair_weight_sums(gray, boxes)
    dtype = _float_dtype(gray.device)
    return sums.to(dtype) / (pairs.to(dtype) * 2.0**k)


@torch.no_grad()
def _select_index(
    images01: Tensor,
    boxes: Tensor,
    luma: Sequence[float],
    select: Literal["argmin", "argmax"],
) -> Tensor:
    gray = quantize_gray(images01, luma)
    sums, _, _ = _pair_weight_sums(gray, boxes)
    # Every candidate has the same number of pairs, so comparing the exact integer sums equals
    # comparing homogeneities, and exact ties go to the first index (torch.argmin/argmax contract).
    return sums.argmin(dim=1) if select == "argmin" else sums.argmax(dim=1)


def select_richest_patch(
    images01: Tensor,
    patch_size: int = 112,
    stride: int | None = None,
    luma: Sequence[float] = DEFAULT_LUMA,
    select: Literal["argmin", "argmax"] = "argmin",
) -> tuple[Tensor, Tensor, Tensor]:
    """Crop each image's texture-richest patch (lowest GLCM homogeneity), batched.

    Returns ``(patches (B, 3, ps, ps), boxes (B, 4) long as (x0, y0, x1, y1), index (B,))``.
    ``select="argmax"`` picks the smoothest patch instead (ablation). Ties go to the first
    candidate in row-major order, like ``np.argmin`` in the released code. The selection itself
    is not differentiable and runs without autograd; the crop is taken by indexing
    ``images01``, so gradients still flow from ``patches`` back to the selected pixels.
    """
    if select not in ("argmin", "argmax"):
        raise ValueError(f"select must be 'argmin' or 'argmax', got {select!r}")
    if images01.ndim != 4 or images01.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images01.shape)}")
    bsz, chans, h, w = images01.shape
    device = images01.device
    boxes = patch_grid(h, w, patch_size, stride, device=device)
    index = _select_index(images01, boxes, luma, select)
    chosen = boxes[index]  # (B, 4)
    offs = torch.arange(patch_size, device=device)
    rows = chosen[:, 1, None] + offs  # (B, ps)
    cols = chosen[:, 0, None] + offs
    patches = images01[
        torch.arange(bsz, device=device)[:, None, None, None],
        torch.arange(chans, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
    return patches, chosen, index


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


def _conv_stem(stem_channels: Sequence[int]) -> nn.Sequential:
    """Per stage: 3 x (Conv3x3 + BN + ReLU) then MaxPool 2x2 (released ``features_SRM``)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for out_ch in stem_channels:
        for _ in range(3):
            layers += [
                nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
            ]
            in_ch = out_ch
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


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
        self.stem = _conv_stem(cfg.stem_channels)
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
