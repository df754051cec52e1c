"""Fused CPU kernel for richest-patch selection (optional: ``pip install mfclip[fast]``).

The torch path in :mod:`mfclip.model.noise` makes about a dozen passes over each image
(grey levels, pair weights, row sums, prefix sums), each a separate eager operation that is
bound by memory traffic. This kernel does the same arithmetic in one pass per image, with
the batch split over threads, and returns the same indices bit for bit:

* grey levels with the same float32 operations in the same order (no fused multiply-add:
  numba does not contract without ``fastmath``), clamped to [0, 255] and truncated;
* pair weights from the same int64 fixed-point table ``round(2**k / (1 + d^2))``, so window
  sums are exact integers and identical windows tie exactly;
* candidates scanned in row-major order with strict comparisons, so ties go to the first.

Compiled on first use (a second or two; cached on disk when the package directory or
``NUMBA_CACHE_DIR`` is writable).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

__all__ = ["select_indices"]


@njit(cache=True, nogil=True)
def _image_index(img: np.ndarray, spec: tuple) -> int:
    """One image's best candidate; ``spec`` as built by :func:`select_indices`."""
    (_, xs, bounds, lo, hi), patch, luma, lut, smallest = spec
    w = img.shape[2]
    w0, w1, w2 = luma[0], luma[1], luma[2]
    scale, zero, top = np.float32(255.0), np.float32(0.0), np.float32(255.0)
    # run[x]: pair weights of columns (x, x + 1) summed over the rows seen so far; a copy is
    # kept at each row bound of a candidate (a top edge or a bottom edge + 1).
    run = np.zeros(w - 1, dtype=np.int64)
    snap = np.empty((len(bounds), w - 1), dtype=np.int64)
    b = 0
    while b < len(bounds) and bounds[b] == 0:
        snap[b, :] = 0
        b += 1
    levels = np.empty(w, dtype=np.int32)
    for y in range(bounds[-1]):
        for x in range(w):  # a loop of its own, so that it vectorises
            v = img[0, y, x] * w0
            v = v + img[1, y, x] * w1
            v = v + img[2, y, x] * w2
            v = v * scale
            v = min(max(v, zero), top)  # NaN (undefined on the torch path) becomes 0 here
            levels[x] = np.int32(v)  # truncation toward zero, as a float -> integer cast
        for x in range(w - 1):
            run[x] += lut[abs(levels[x + 1] - levels[x])]
        while b < len(bounds) and bounds[b] == y + 1:
            snap[b, :] = run
            b += 1
    best_index, best = 0, np.int64(0)
    col = np.empty(w, dtype=np.int64)
    index = 0
    for r in range(len(lo)):
        col[0] = 0
        for x in range(w - 1):
            col[x + 1] = col[x] + snap[hi[r], x] - snap[lo[r], x]
        for x0 in xs:
            total = col[x0 + patch - 1] - col[x0]
            if index == 0 or (total < best if smallest else total > best):
                best, best_index = total, index
            index += 1
    return best_index


@njit(cache=True, nogil=True)
def _batch_indices(images: np.ndarray, spec: tuple, out: np.ndarray, patches: np.ndarray) -> None:
    (ys, xs, _, _, _), patch = spec[0], spec[1]
    crop = patches.shape[0] > 0
    for i in range(images.shape[0]):
        index = _image_index(images[i], spec)
        out[i] = index
        if crop:  # while the image is still in cache
            y0, x0 = ys[index // len(xs)], xs[index % len(xs)]
            patches[i] = images[i, :, y0 : y0 + patch, x0 : x0 + patch]


def select_indices(
    images: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    patch: int,
    luma: np.ndarray,
    lut: np.ndarray,
    smallest: bool,
    threads: int = 1,
    crop: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Index (row-major over ``ys`` x ``xs``) of each image's extreme-homogeneity window.

    ``images`` float32 ``(B, 3, H, W)`` C-contiguous in [0, 1]; ``ys``/``xs`` int64 top and
    left edges; ``luma`` float32 ``(3,)``; ``lut`` the int64 fixed-point pair-weight table;
    ``smallest`` picks the minimum; ``crop`` also returns the chosen patches ``(B, 3, p, p)``
    (copied while each image is still in cache). The batch is split over ``threads`` Python
    threads (the kernel releases the GIL) rather than numba's own thread pool, which may not
    be entered from several threads at once: a model served from a thread pool stays safe.
    """
    bounds = np.unique(np.concatenate([ys, ys + patch]))
    candidates = (ys, xs, bounds, np.searchsorted(bounds, ys), np.searchsorted(bounds, ys + patch))
    spec = (candidates, patch, luma, lut, smallest)
    out = np.empty(images.shape[0], dtype=np.int64)
    shape = (images.shape[0] if crop else 0, images.shape[1], patch, patch)
    patches = np.empty(shape, dtype=images.dtype)
    parts = max(1, min(threads, images.shape[0]))
    edges = np.linspace(0, images.shape[0], parts + 1).astype(np.int64)

    def run(part: int) -> None:
        a, b = edges[part], edges[part + 1]
        _batch_indices(images[a:b], spec, out[a:b], patches[a:b] if crop else patches)

    if parts == 1:
        run(0)
        return out, patches if crop else None
    with ThreadPoolExecutor(parts - 1) as pool:
        futures = [pool.submit(run, part) for part in range(1, parts)]
        run(0)
        for future in futures:
            future.result()  # re-raises a worker's exception here
    return out, patches if crop else None
