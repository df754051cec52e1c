"""Detection over a stream of inputs, sharded across ``torchrun`` ranks, merged in input order.

Rank ``r`` of ``world`` scores the inputs ``i`` with ``i % world == r`` (no input twice, none
padded). The ranks exchange results in chunks: after each ``per_rank`` inputs of its own, every
rank sends its rows to rank 0 (``gather_object``), which yields the chunk in input order. Why
chunks rather than one part file per rank merged at the end: rank 0's output is at every
moment a prefix of the final file, so a killed run resumes by counting rows (no part files to
reconcile), results appear while the run goes on, no shared file system is needed for the
output across nodes, and memory is one chunk of rows whatever the number of inputs. The cost
is a synchronisation per chunk; each rank keeps decoding ahead while it waits.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterable, Iterator
from typing import IO, Any

from ..distributed import DistEnv
from .detector import Detection, Detector

__all__ = ["detect_sharded", "read_list"]

#: ``(input index, rank that scored it, its rows: frame rows then the input's own row)``.
Scored = tuple[int, int, list[Detection]]


def read_list(source: str) -> Iterator[str]:
    """The paths of a list file (``-``: stdin), one per line, read lazily.

    Blank lines and lines starting with ``#`` are skipped; surrounding spaces are stripped.
    The file is opened here, so a missing list fails before any model is loaded.
    """
    fh = sys.stdin if source == "-" else open(source, encoding="utf-8")  # noqa: SIM115
    return _lines(fh, close=source != "-")


def _lines(fh: IO[str], close: bool) -> Iterator[str]:
    try:
        for line in fh:
            text = line.strip()
            if text and not text.startswith("#"):
                yield text
    finally:
        if close:
            fh.close()


def detect_sharded(
    detector: Detector,
    inputs: Iterable[str],
    env: DistEnv,
    start: int = 0,
    per_rank: int = 128,
    **detect: Any,
) -> Iterator[Scored]:
    """Every input's rows in input order on rank 0; on other ranks, nothing.

    ``inputs`` are the inputs from index ``start`` on (every rank passes the same ones);
    ``detect`` goes to :meth:`Detector.detect_paths`. Each rank reads only ``per_rank``
    results ahead of the slowest rank, so memory does not grow with the number of inputs.
    """
    indices: deque[int] = deque()

    def own() -> Iterator[str]:
        for index, path in enumerate(inputs, start):
            if index % env.world_size == env.rank:
                indices.append(index)
                yield path

    rows = detector.detect_paths(own(), **detect)
    group: list[tuple[int, list[Detection]]] = []
    frames: list[Detection] = []
    for det in rows:
        frames.append(det)
        if det.kind == "frame":
            continue
        group.append((indices.popleft(), frames))
        frames = []
        if not env.distributed:
            yield group[0][0], 0, group[0][1]
            group = []
        elif len(group) == per_rank:
            yield from _exchange(env, group, finished=False)
            group = []
    if not env.distributed:
        return
    while (yield from _exchange(env, group, finished=True)):
        group = []


def _exchange(
    env: DistEnv, group: list[tuple[int, list[Detection]]], finished: bool
) -> Iterator[Scored]:
    """Send this rank's chunk to rank 0 (which yields the merged chunk in order).

    Returns whether any rank has inputs left, so that every rank takes part in the same
    number of exchanges, however the inputs fell between them.
    """
    parts = env.gather_to_main(group)
    more = env.all_reduce_max(0.0 if finished else 1.0) > 0  # before rank 0 writes the chunk
    if parts is not None:
        merged = [(i, rank, rows) for rank, part in enumerate(parts) for i, rows in part]
        merged.sort(key=lambda item: item[0])
        yield from merged
    return more
