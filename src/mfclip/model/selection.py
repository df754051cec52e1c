"""Richest-patch selection: the one implementation, exact, batched and traceable.

Training, inference and the ONNX export all run :func:`select_richest_patch`: the candidate
window with the lowest GLCM homogeneity (:mod:`mfclip.model.glcm`), compared as exact integer
sums so that the choice equals skimage's ``graycomatrix``/``graycoprops`` argmin. Under
``torch.onnx.export``, TorchScript or ``torch.compile`` the same arithmetic is traced as plain
tensor operations (one chunk, int32 grey levels, a gather crop), so ONNX Runtime picks the same
patch bit for bit. On the CPU an optional fused numba kernel (``mfclip[fast]``) gives the same
indices several times faster.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from .glcm import (
    DEFAULT_LUMA,
    _chunk_size,
    _fixed_point_bits,
    _gray_levels,
    _pair_weight_lut,
    _range_sums,
    _Scratch,
)

__all__ = [
    "KERNEL_ENV",
    "SelectionKernel",
    "is_tracing",
    "patch_grid",
    "select_richest_patch",
]

log = logging.getLogger(__name__)


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


def is_tracing() -> bool:
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
    if usable and is_tracing():
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
    b, h, w = images01.shape[0], int(images01.shape[2]), int(images01.shape[3])
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

    y_ranges = torch.stack([ys, ys + patch_size], 1)
    x_ranges = torch.stack([xs, xs + patch_size - 1], 1)
    if is_tracing():
        # The same arithmetic as plain operations on the whole batch: no reused buffers (out=
        # arguments), no chunking by the traced batch size, and int32 grey levels (ONNX
        # Runtime subtracts int32, not int16).
        gray = _gray_levels(images01, luma, torch.int32)
        sums = _range_sums(gray, y_ranges, x_ranges, k, patch_size).flatten(1)
        return (sums.argmin(dim=1) if select == "argmin" else sums.argmax(dim=1)), None
    # Grey levels as int16 on the CPU, where float -> uint8 conversion is several times slower.
    levels = torch.int16 if images01.device.type == "cpu" else torch.uint8
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
    bsz, chans, h, w = images01.shape[0], *(int(d) for d in images01.shape[1:])
    ps = patch_size
    if is_tracing():
        # Two gathers whose index shapes come from broadcasting against constant zeros, so the
        # traced graph keeps the batch axis dynamic and every other axis static.
        offs = torch.arange(ps, device=images01.device)
        rows = top[:, None] + offs  # (B, ps)
        cols = left[:, None] + offs
        row_base = torch.zeros(1, chans, 1, w, dtype=torch.long, device=images01.device)
        col_base = torch.zeros(1, chans, ps, 1, dtype=torch.long, device=images01.device)
        strip = images01.gather(2, rows[:, None, :, None] + row_base)  # (B, C, ps, W)
        return strip.gather(3, cols[:, None, None, :] + col_base)  # (B, C, ps, ps)
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
    h, w = int(images01.shape[2]), int(images01.shape[3])
    ys, xs = _grid_axes(h, w, patch_size, stride, images01.device)
    if len(luma) != 3:
        raise ValueError(f"luma must have 3 weights, got {len(luma)}")
    differentiable = torch.is_grad_enabled() and images01.requires_grad
    index, patches = _select(
        images01, ys, xs, patch_size, luma, select, kernel, may_crop=not differentiable
    )
    columns = int(xs.shape[0])
    top, left = ys[index // columns], xs[index % columns]
    chosen = torch.stack([left, top, left + patch_size, top + patch_size], dim=1)  # (B, 4)
    if patches is None:
        patches = _crop(images01, top, left, patch_size)
    return patches, chosen, index
