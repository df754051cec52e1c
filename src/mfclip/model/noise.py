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

import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

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

log = logging.getLogger(__name__)

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
    return _gray_levels(images01, luma, torch.uint8)


class _Scratch:
    """Buffers reused across the chunks of one call, so each chunk writes to warm memory.

    ``get`` returns a view of a buffer of at least the requested size.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def get(
        self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
    ) -> Tensor:
        buf = self._buffers.get(name)
        if (
            buf is None
            or buf.shape[0] < shape[0]
            or buf.shape[1:] != shape[1:]
            or buf.dtype != dtype
            or buf.device != device
        ):
            buf = torch.empty(shape, dtype=dtype, device=device)
            self._buffers[name] = buf
        return buf[: shape[0]]


def _gray_levels(
    images01: Tensor, luma: Sequence[float], dtype: torch.dtype, scratch: _Scratch | None = None
) -> Tensor:
    """:func:`quantize_gray` without the checks, as ``dtype`` (uint8, or int16: same levels)."""
    x = images01.detach().to(torch.float32)
    w0, w1, w2 = (float(v) for v in luma)
    # ((r*w0 + g*w1) + b*w2) * 255, each step rounded to float32.
    if scratch is None:  # plain ops (this is also the form the ONNX exporter traces)
        gray = x[:, 0] * w0
        gray += x[:, 1] * w1
        gray += x[:, 2] * w2
    else:  # the same ops into reused buffers
        shape, dev = (x.shape[0], x.shape[2], x.shape[3]), x.device
        gray = torch.mul(x[:, 0], w0, out=scratch.get("gray", shape, torch.float32, dev))
        tmp = torch.mul(x[:, 1], w1, out=scratch.get("tmp", shape, torch.float32, dev))
        gray += tmp
        gray += torch.mul(x[:, 2], w2, out=tmp)
    gray *= 255.0
    gray.clamp_(0.0, 255.0)
    # Both integer casts truncate toward zero, so uint8 and int16 hold the same levels.
    if scratch is None:
        return gray.to(dtype)
    return scratch.get("levels", tuple(gray.shape), dtype, gray.device).copy_(gray)


def _grid_axes(
    height: int,
    width: int,
    patch_size: int,
    stride: int | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Top edges ``ys`` and left edges ``xs`` of the candidate grid (validated)."""
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
    return ys, xs


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
    ys, xs = _grid_axes(height, width, patch_size, stride, device)
    y0, x0 = torch.meshgrid(ys, xs, indexing="ij")
    y0, x0 = y0.reshape(-1), x0.reshape(-1)
    return torch.stack([x0, y0, x0 + patch_size, y0 + patch_size], dim=1).long()


def _float_dtype(device: torch.device) -> torch.dtype:
    """float64 where the backend has it; MPS has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _fixed_point_bits(height: int, width: int) -> int:
    """``k`` such that pair weights scaled by ``2**k`` sum over the whole image within int64."""
    total_pairs = max(height * (width - 1), 1)
    k = min(52, 62 - total_pairs.bit_length())
    if k < 16:
        raise ValueError(f"image {height}x{width} is too large for exact GLCM window sums")
    return k


#: Pixels per chunk on the CPU: a chunk's temporaries stay in cache, and there are few chunks.
_CPU_CHUNK_PIXELS = 1 << 18
#: float64 represents every integer up to this exactly, so sums that stay below it are exact.
_EXACT_F64 = 2**53


def _chunk_size(batch: int, height: int, width: int, device: torch.device) -> int:
    """Images per chunk: cache-sized on the CPU, the whole batch elsewhere."""
    if device.type != "cpu":
        return max(batch, 1)
    return max(1, _CPU_CHUNK_PIXELS // max(height * width, 1))


def _pair_weights_f64(gray: Tensor, k: int, scratch: _Scratch | None = None) -> Tensor:
    """Fixed-point pair weights ``round(2**k / (1 + d^2))`` ``(B, H, W-1)`` as float64 integers.

    ``2**k / (1 + d*d)`` is one correctly rounded division, which equals ``(1 / (1 + d*d)) *
    2**k`` (scaling by a power of two is exact), the expression of the lookup table
    (:func:`_pair_weight_lut`), so the values are identical; arithmetic is cheaper than a
    gather here.
    """
    g = gray.to(torch.int16)
    n, h, w = g.shape
    shape, dev = (n, h, w - 1), g.device
    one = torch.ones((), dtype=torch.float64, device=dev)
    scale = torch.full((), 2.0**k, dtype=torch.float64, device=dev)
    if scratch is None:
        d = (g[:, :, 1:] - g[:, :, :-1]).to(torch.float64)  # pair (x, x+1) at column x
        return torch.div(scale, torch.addcmul(one, d, d)).round_()  # 1 + d*d is exact
    diff = torch.sub(g[:, :, 1:], g[:, :, :-1], out=scratch.get("diff", shape, torch.int16, dev))
    d = scratch.get("d", shape, torch.float64, dev).copy_(diff)
    denom = torch.addcmul(one, d, d, out=scratch.get("denom", shape, torch.float64, dev))
    return torch.div(scale, denom, out=d).round_()


def _pair_weight_lut(k: int, device: torch.device | None = None) -> Tensor:
    """``round(2**k / (1 + d^2))`` for d in 0..255, int64."""
    d = torch.arange(256, dtype=torch.float64)
    return torch.round((1.0 / (1.0 + d * d)) * 2.0**k).to(torch.int64).to(device)


def _row_range_sums(weights: Tensor, ay: Tensor, max_rows: int, k: int) -> Tensor:
    """``ay @ weights`` ``(B, Uy, W-1)`` in int64, exact.

    Sums of float64 integers are exact in any order while they stay below ``2**53``; where a
    range's sum could exceed that, the weights are split into high and low parts first.
    """
    if max_rows * 2**k <= _EXACT_F64:
        return torch.matmul(ay, weights).to(torch.int64)
    # The largest power of two ``p`` with max_rows * p <= 2**53: both parts' sums stay exact.
    p = 1 << ((_EXACT_F64 // max_rows).bit_length() - 1)
    high = torch.floor(weights / p)
    low = weights - high * p
    return torch.matmul(ay, high).to(torch.int64) * p + torch.matmul(ay, low).to(torch.int64)


def _range_sums(
    gray: Tensor,
    y_ranges: Tensor,
    x_ranges: Tensor,
    k: int,
    max_rows: int | None = None,
    scratch: _Scratch | None = None,
) -> Tensor:
    """Exact fixed-point pair-weight sums ``(B, Uy, Ux)`` int64 over row x pair-column ranges.

    ``y_ranges`` ``(Uy, 2)`` are row ranges ``[y0, y1)``; ``x_ranges`` ``(Ux, 2)`` are ranges
    ``[x0, xe)`` of pair columns (pair ``(x, x+1)`` sits at column ``x``); ``max_rows`` bounds
    the ranges' heights (default: the image height). Windows are separable, so rows are summed
    first (a 0/1 matrix product, exact, see :func:`_row_range_sums`) and pair columns second
    (int64 prefix sums of the few row-range sums). The result equals a full int64 integral
    image's window sums bit for bit, with far less memory traffic. Without float64 (MPS) the
    row sums use int64 prefix sums instead.
    """
    b, h = gray.shape[:2]
    device = gray.device
    if b == 0:
        return torch.zeros((0, len(y_ranges), len(x_ranges)), dtype=torch.int64, device=device)
    y0, y1 = y_ranges[:, 0], y_ranges[:, 1]
    x0, xe = x_ranges[:, 0], x_ranges[:, 1]
    max_rows = h if max_rows is None else max_rows
    if _float_dtype(device) == torch.float64:
        rows = torch.arange(h, device=device)
        ay = ((rows >= y0[:, None]) & (rows < y1[:, None])).to(torch.float64)  # (Uy, H)
        row_sums = _row_range_sums(_pair_weights_f64(gray, k, scratch), ay, max_rows, k)
    else:
        g = gray.to(torch.int16)
        diff = (g[:, :, 1:] - g[:, :, :-1]).abs_().long()
        cum = F.pad(_pair_weight_lut(k, device).take(diff).cumsum(1), (0, 0, 1, 0))
        row_sums = cum[:, y1] - cum[:, y0]  # (B, Uy, W-1)
    cum = F.pad(row_sums.cumsum(2), (1, 0))  # (B, Uy, W): sums over pair columns < x
    return cum[:, :, xe] - cum[:, :, x0]


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
    k = _fixed_point_bits(h, w)
    # Pairs of the window [y0, y1) x [x0, x1) start at columns [x0, x1 - 1).
    xe = x1 - 1
    pairs = (y1 - y0) * (xe - x0)
    if not boxes.numel():
        return torch.zeros((b, 0), dtype=torch.int64, device=device), pairs, k
    y_ranges, iy = torch.unique(torch.stack([y0, y1], 1), dim=0, return_inverse=True)
    x_ranges, ix = torch.unique(torch.stack([x0, xe], 1), dim=0, return_inverse=True)
    max_rows = int((y_ranges[:, 1] - y_ranges[:, 0]).max())
    step, scratch = _chunk_size(b, h, w, device), _Scratch()
    sums = torch.cat(
        [_range_sums(g, y_ranges, x_ranges, k, max_rows, scratch) for g in gray.split(step)]
        or [torch.zeros((0, len(y_ranges), len(x_ranges)), dtype=torch.int64, device=device)]
    )
    return sums[:, iy, ix], pairs, k


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


SelectionKernel = Literal["auto", "torch", "numba"]
#: Environment variable that overrides ``kernel="auto"`` (``torch`` or ``numba``).
KERNEL_ENV = "MFCLIP_SELECTION_KERNEL"


@functools.lru_cache(maxsize=1)
def _numba_module() -> Any:
    """The fused CPU kernel, or ``None`` where numba is not installed or cannot load."""
    try:
        from . import selection_numba
    except ImportError as exc:  # numba absent, or too old/new for this numpy
        log.debug("numba selection kernel unavailable: %s", exc)
        return None
    return selection_numba


def _tracing() -> bool:
    """Inside ONNX export, TorchScript or torch.compile: only torch operations may run."""
    compiling = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    return (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.onnx.is_in_onnx_export()
        or (compiling is not None and compiling())
    )


def _resolve_kernel(kernel: str, device: torch.device) -> str:
    """``auto`` -> the fused numba kernel on the CPU when it is installed, else torch."""
    if kernel == "auto":
        kernel = os.environ.get(KERNEL_ENV, "auto") or "auto"
    if kernel not in ("auto", "torch", "numba"):
        raise ValueError(f"selection kernel must be 'auto', 'torch' or 'numba', got {kernel!r}")
    if kernel == "torch":
        return "torch"
    usable = device.type == "cpu" and _numba_module() is not None
    if usable and _tracing():
        return "torch"
    if kernel == "numba" and not usable:
        raise ValueError(
            "the numba selection kernel runs on the CPU and needs numba "
            "(pip install 'mfclip[fast]')"
            if device.type == "cpu"
            else f"the numba selection kernel runs on the CPU, not on {device}"
        )
    return "numba" if usable else "torch"


@functools.lru_cache(maxsize=8)
def _pair_weight_lut_numpy(k: int) -> Any:
    return _pair_weight_lut(k).numpy()


@torch.no_grad()
def _select(
    images01: Tensor,
    ys: Tensor,
    xs: Tensor,
    patch_size: int,
    luma: Sequence[float],
    select: Literal["argmin", "argmax"],
    kernel: SelectionKernel,
    may_crop: bool,
) -> tuple[Tensor, Tensor | None]:
    """Indices ``(B,)`` in patch_grid order, and the crops where the fused kernel took them.

    The fused kernel crops too when ``may_crop`` (no gradient has to reach ``images01``; this
    function runs without autograd, so the caller decides) and the input is float32, the
    dtype it works in; otherwise the caller crops with torch.
    """
    b, _, h, w = images01.shape
    k = _fixed_point_bits(h, w)
    if _resolve_kernel(kernel, images01.device) == "numba":
        import numpy as np

        index, patches = _numba_module().select_indices(
            images01.detach().to(torch.float32).contiguous().numpy(),
            ys.numpy(),
            xs.numpy(),
            patch_size,
            np.asarray(luma, dtype=np.float32),
            _pair_weight_lut_numpy(k),
            select == "argmin",
            threads=torch.get_num_threads(),
            crop=may_crop and images01.dtype == torch.float32,
        )
        return torch.from_numpy(index), None if patches is None else torch.from_numpy(patches)

    # Grey levels as int16 on the CPU, where float -> uint8 conversion is several times slower.
    levels = torch.int16 if images01.device.type == "cpu" else torch.uint8
    y_ranges = torch.stack([ys, ys + patch_size], 1)
    x_ranges = torch.stack([xs, xs + patch_size - 1], 1)
    # Chunk by chunk (grey levels included) into reused buffers, so that on the CPU the
    # temporaries stay in cache.
    scratch = _Scratch()
    sums = torch.cat(
        [
            _range_sums(
                _gray_levels(chunk, luma, levels, scratch),
                y_ranges,
                x_ranges,
                k,
                patch_size,
                scratch,
            )
            for chunk in images01.split(_chunk_size(b, h, w, images01.device))
        ]
    ).flatten(1)  # (B, P) in patch_grid order
    # Every candidate has the same number of pairs, so comparing the exact integer sums equals
    # comparing homogeneities, and exact ties go to the first index (torch.argmin/argmax contract).
    return (sums.argmin(dim=1) if select == "argmin" else sums.argmax(dim=1)), None


def _crop(images01: Tensor, top: Tensor, left: Tensor, patch_size: int) -> Tensor:
    """``(B, C, ps, ps)`` crops at per-image corners, differentiable w.r.t. ``images01``.

    On the CPU, slicing each image is several times faster than a batched gather; elsewhere a
    gather keeps the corners on the device (no host synchronisation).
    """
    bsz, chans, h, w = images01.shape
    ps = patch_size
    if images01.device.type == "cpu":
        corners = torch.stack([top, left], 1).tolist()
        if not corners:
            return images01.new_empty((0, chans, ps, ps))
        return torch.stack(
            [images01[i, :, y : y + ps, x : x + ps] for i, (y, x) in enumerate(corners)]
        )
    offs = torch.arange(ps, device=images01.device)
    flat = (top[:, None, None] + offs[:, None]) * w + (left[:, None, None] + offs)  # (B, ps, ps)
    flat = flat.view(bsz, 1, ps * ps).expand(bsz, chans, -1)
    return images01.reshape(bsz, chans, h * w).gather(2, flat).view(bsz, chans, ps, ps)


def select_richest_patch(
    images01: Tensor,
    patch_size: int = 112,
    stride: int | None = None,
    luma: Sequence[float] = DEFAULT_LUMA,
    select: Literal["argmin", "argmax"] = "argmin",
    kernel: SelectionKernel = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """Crop each image's texture-richest patch (lowest GLCM homogeneity), batched.

    Returns ``(patches (B, 3, ps, ps), boxes (B, 4) long as (x0, y0, x1, y1), index (B,))``.
    ``select="argmax"`` picks the smoothest patch instead (ablation). Ties go to the first
    candidate in row-major order, like ``np.argmin`` in the released code. The selection itself
    is not differentiable and runs without autograd; the crop is taken from ``images01``, so
    gradients still flow from ``patches`` back to the selected pixels.

    ``kernel``: ``"auto"`` uses the fused numba kernel for CPU tensors when numba is
    installed (``mfclip[fast]``; several times faster) and torch operations otherwise;
    ``"torch"``/``"numba"`` force one. Both return the same indices bit for bit. The
    ``MFCLIP_SELECTION_KERNEL`` environment variable overrides ``"auto"``.
    """
    if select not in ("argmin", "argmax"):
        raise ValueError(f"select must be 'argmin' or 'argmax', got {select!r}")
    if images01.ndim != 4 or images01.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images01.shape)}")
    _, _, h, w = images01.shape
    ys, xs = _grid_axes(h, w, patch_size, stride, images01.device)
    if len(luma) != 3:
        raise ValueError(f"luma must have 3 weights, got {len(luma)}")
    differentiable = torch.is_grad_enabled() and images01.requires_grad
    index, patches = _select(
        images01, ys, xs, patch_size, luma, select, kernel, may_crop=not differentiable
    )
    top, left = ys[index // xs.shape[0]], xs[index % xs.shape[0]]
    chosen = torch.stack([left, top, left + patch_size, top + patch_size], dim=1)  # (B, 4)
    if patches is None:
        patches = _crop(images01, top, left, patch_size)
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
