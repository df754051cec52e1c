"""Training data: the train/validation datasets, per-rank samplers and loaders.

Only the training and validation splits are read here; the test split is for
``mfclip evaluate``. Samplers are seeded per epoch and can skip the batches a resumed run has
already done, so a resume continues on exactly the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler, Subset

from ..data.dataset import ManifestDataset, collate
from ..data.sampler import BalancedSampler
from ..data.sbi import SelfBlend
from ..data.transforms import build_eval_transform, build_train_transform
from ..model.mfclip import MFCLIP
from .config import TrainConfig
from .distributed import DistEnv

__all__ = [
    "SkipSampler",
    "build_datasets",
    "steps_per_epoch",
    "train_loader",
    "validation_loader",
]


class SkipSampler(Sampler[int]):
    """Yields an epoch's indices from position ``skip`` on (mid-epoch resume)."""

    def __init__(self, base: Sampler[int], skip: int) -> None:
        self.base, self.skip = base, skip

    def __iter__(self) -> Iterator[int]:
        for i, index in enumerate(self.base):
            if i >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)  # type: ignore[arg-type]


def build_datasets(cfg: TrainConfig, model: MFCLIP) -> tuple[ManifestDataset, ManifestDataset]:
    """The training split (augmented, optionally self-blended) and the validation split."""
    d = cfg.data
    pre = model.config.preprocess
    common = dict(
        tokenizer=model.tokenizer if model.text is not None else None,
        levels=model.levels,
        context_length=model.config.fle.context_length,
        root=d.root,
    )
    blend = SelfBlend(p=d.self_blend_p) if d.self_blend else None
    train = ManifestDataset(
        d.manifest,
        build_train_transform(pre, d.augment),
        split=d.train_split,
        seed=cfg.seed,
        self_blend=blend,
        **common,
    )
    val_source = d.val_manifest or d.manifest
    try:
        val = ManifestDataset(val_source, build_eval_transform(pre), split=d.val_split, **common)
    except ValueError as exc:
        raise ValueError(
            f"{val_source}: no '{d.val_split}' rows: model selection needs validation data "
            f"(the test split is never used for it); set data.val_split or data.val_manifest"
        ) from exc
    return train, val


def steps_per_epoch(cfg: TrainConfig, env: DistEnv, dataset: ManifestDataset) -> int:
    """Optimiser steps in one epoch of this rank's shard (at least one)."""
    per_rank = math.ceil(len(dataset) / env.world_size)
    batches = math.ceil(per_rank / cfg.data.batch_size)
    steps = max(1, batches // cfg.grad_accum)
    if cfg.max_steps_per_epoch is not None:
        steps = min(steps, cfg.max_steps_per_epoch)
    return steps


def _train_sampler(
    cfg: TrainConfig, env: DistEnv, dataset: ManifestDataset, epoch: int
) -> Sampler[int]:
    sampler: Any
    if cfg.data.balanced:
        sampler = BalancedSampler(
            dataset.labels, num_replicas=env.world_size, rank=env.rank, seed=cfg.seed
        )
    else:
        sampler = DistributedSampler(
            dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=cfg.seed
        )
    sampler.set_epoch(epoch)
    return sampler


def train_loader(
    cfg: TrainConfig, env: DistEnv, dataset: ManifestDataset, epoch: int, skip_batches: int
) -> DataLoader:
    """This rank's batches of ``epoch``, from batch ``skip_batches`` on."""
    dataset.set_epoch(epoch)
    batch_size = cfg.data.batch_size
    sampler = SkipSampler(_train_sampler(cfg, env, dataset, epoch), skip_batches * batch_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        collate_fn=collate,
        pin_memory=env.device.type == "cuda",
        # A private generator: worker seeding never consumes the global RNG, so resuming
        # mid-run leaves dropout and friends exactly where they were.
        generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch),
        persistent_workers=False,
    )


def validation_loader(cfg: TrainConfig, env: DistEnv, dataset: ManifestDataset) -> DataLoader:
    """This rank's strided shard of the validation split (every sample on exactly one rank)."""
    indices = list(range(env.rank, len(dataset), env.world_size))
    return DataLoader(
        Subset(dataset, indices),
        batch_size=cfg.data.eval_batch_size,
        num_workers=cfg.data.num_workers,
        collate_fn=collate,
    )
