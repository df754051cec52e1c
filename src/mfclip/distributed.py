"""Process-group set-up, shards and object collectives for ``torchrun`` (NCCL on GPU, gloo on CPU).

Training, ``mfclip evaluate`` and ``mfclip detect`` share this module, so one ``torchrun``
command line works for all three, on one node or several. Single-process runs use the same
code paths with a world of one, so there is one loop to test.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from .device import pick_device

__all__ = ["DistEnv", "pick_device", "shard_indices"]


def shard_indices(n: int, rank: int, world: int, contiguous: bool = False) -> range:
    """The indices of ``range(n)`` that ``rank`` scores: every index on exactly one rank.

    Strided (``rank, rank + world, ...``) by default, or one contiguous block per rank. Unlike
    ``DistributedSampler`` no index is padded or repeated, so gathered results need no trim.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}")
    if not contiguous:
        return range(rank, n, world)
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


@dataclass
class DistEnv:
    """Rank, world size and device of this process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def setup(cls, device: str = "auto") -> DistEnv:
        """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1).

        Each rank of a node takes ``cuda:LOCAL_RANK`` (``auto`` or a bare ``cuda``), so ranks
        never share a GPU by accident.
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        dev = pick_device(device, local)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", local)
        if world > 1 and not dist.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            dist.init_process_group(backend=backend)
        return cls(rank, world, local, dev)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def gather_to_main(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` in rank order on rank 0 (``None`` elsewhere): no copy per rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce_max(self, value: float) -> float:
        return self._all_reduce(value, dist.ReduceOp.MAX)

    def all_reduce_sum(self, value: float) -> float:
        return self._all_reduce(value, dist.ReduceOp.SUM)

    def _all_reduce(self, value: float, op: dist.ReduceOp) -> float:
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=op)
        return float(t.item())

    def tag_logs(self) -> None:
        """Prefix the log lines of ranks other than 0 with ``rank N:``, to tell them apart."""
        if self.is_main:
            return
        fmt = logging.Formatter(f"%(levelname)s rank {self.rank}: %(name)s: %(message)s")
        for handler in logging.getLogger().handlers:
            handler.setFormatter(fmt)

    @contextmanager
    def leaving_when_done(self) -> Iterator[DistEnv]:
        """Leave the group as the block ends: all ranks together, or at once after an error.

        The one exit that ``detect``, ``evaluate`` and ``train`` share; see :meth:`cleanup`.
        """
        try:
            yield self
        except BaseException:
            self.cleanup(synchronise=False)
            raise
        self.cleanup()

    def cleanup(self, synchronise: bool = True) -> None:
        """Leave the process group; after a run that ended normally, all ranks together.

        A rank whose share ended early (rank 1 of ``detect``, with nothing to write) would
        otherwise tear its gloo pairs down while rank 0 still runs; CI saw such a rank abort
        at exit ("terminate called without an active exception") after every result had been
        written, which failed the whole ``torchrun``. So every rank first waits for the
        others at a barrier. After an error (``synchronise=False``) a peer may be gone and a
        barrier would hang until the timeout, so the rank leaves at once. The group's C++
        objects are then collected while the interpreter is whole, not during its
        finalisation, where freeing them can abort.
        """
        if not (self.distributed and dist.is_initialized()):
            return
        if synchronise:
            dist.barrier()
        dist.destroy_process_group()
        gc.collect()
