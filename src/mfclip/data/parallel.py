"""Map a function over items on all cores, in order, with a progress bar."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from tqdm import tqdm

__all__ = ["default_workers", "parallel_map"]

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Cores this process may use (respects CPU affinity, e.g. in containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _context(fn: Callable[..., Any]) -> multiprocessing.context.BaseContext:
    """Never plain ``fork``: a forked child inherits OpenCV's/torch's thread-pool locks and can
    deadlock. ``forkserver`` (Unix) imports ``fn``'s module once, then forks clean children;
    ``spawn`` elsewhere."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        module = getattr(getattr(fn, "func", fn), "__module__", None) or __name__
        context.set_forkserver_preload([module])
        return context
    return multiprocessing.get_context("spawn")


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int | None = None,
    desc: str = "",
    progress: bool = True,
    chunksize: int = 1,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
) -> Iterator[R]:
    """``map(fn, items)`` in order; worker processes when ``workers > 1``.

    ``fn`` must be a module-level function (picklable); it should catch its own errors so
    one bad item cannot end the whole run.
    """
    workers = default_workers() if workers is None else max(1, workers)
    bar = tqdm(total=len(items), desc=desc, disable=not progress, unit="file")
    try:
        if workers == 1 or len(items) <= 1:
            if initializer is not None:
                initializer(*initargs)
            for item in items:
                yield fn(item)
                bar.update()
            return
        with ProcessPoolExecutor(
            max_workers=min(workers, len(items)),
            mp_context=_context(fn),
            initializer=initializer,
            initargs=initargs,
        ) as pool:
            for result in pool.map(fn, items, chunksize=chunksize):
                yield result
                bar.update()
    finally:
        bar.close()
