"""Exact GLCM homogeneity of image windows, batched on any device (the noise branch's measure).

The released code picks, per image and in Python on the CPU, the patch whose grey-level
co-occurrence matrix (distance 1, angle 0, 256 levels, symmetric, normalised) has the lowest
homogeneity. Here the measure is computed for all images and windows at once and reproduces
skimage exactly:

* for that GLCM, homogeneity is the mean over all horizontally adjacent pixel pairs ``(a, b)``
  inside the window of ``1 / (1 + (a - b)^2)``, so no 256x256 matrix is needed;
* the pair weights are summed over every window at once in **int64 fixed point** (weights
  scaled by ``2**k``), so window sums are exact: identical windows tie exactly and the first
  one wins, like ``np.argmin``, on every device (floating-point sums would break such ties by
  rounding noise). The quantisation error of the weights is below ``2**-(k+1)`` per pair
  (about ``1e-14`` for 224x224 images).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DEFAULT_LUMA", "glcm_homogeneity", "quantize_gray"]

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
    g = gray if gray.dtype in (torch.int16, torch.int32) else gray.to(torch.int16)
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
    b, h = gray.shape[0], int(gray.shape[1])
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
