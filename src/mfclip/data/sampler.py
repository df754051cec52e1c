"""Class-balanced sampling that also shards across distributed ranks.

Each epoch draws the same balanced index sequence on every rank (seeded by ``seed`` and the
epoch) and gives each rank its own slice, like ``DistributedSampler`` does for plain order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["BalancedSampler"]


class BalancedSampler(Sampler[int]):
    """Samples indices so every key (label, generator, ...) is drawn equally often.

    ``keys[i]`` is the balancing key of item ``i`` (e.g. ``dataset.labels``). Draws with
    replacement; ``num_samples`` defaults to the dataset size. Call :meth:`set_epoch`.
    """

    def __init__(
        self,
        keys: Sequence[Hashable],
        num_samples: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
    ) -> None:
        if not keys:
            raise ValueError("BalancedSampler needs at least one item")
        if num_replicas is None:
            num_replicas = (
                dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
            )
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        counts = Counter(keys)
        weights = np.array([1.0 / counts[k] for k in keys])
        self.weights = weights / weights.sum()
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        total = num_samples or len(keys)
        self.per_rank = math.ceil(total / num_replicas)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        drawn = rng.choice(len(self.weights), self.per_rank * self.num_replicas, p=self.weights)
        return iter(int(i) for i in drawn[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return self.per_rank
