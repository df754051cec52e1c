"""The loop's state and the run's parts, each in one object the trainer passes around.

:class:`TrainState` is what a resume file restores, so a stopped run continues exactly where it
was; :class:`RunParts` holds the objects one run builds once (model, optimiser, data, logs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..data.dataset import ManifestDataset
from ..model.mfclip import MFCLIP
from .checkpoint import capture_rng, restore_rng
from .distributed import DistEnv
from .logs import RunLogs

__all__ = ["RunParts", "TrainState"]

#: Resume-file keys that belong to :class:`TrainState` (the rest is optimiser state and RNG).
_STATE_KEYS = ("epoch", "batch", "global_step", "best", "bad_epochs", "history")


@dataclass
class TrainState:
    """Where training stands: the next batch to run and what validation has said so far.

    ``epoch`` is 0-based and ``batch`` counts the batches of it already done, so a saved state
    always names the point to resume from.
    """

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    best: float | None = None
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def position(self) -> str:
        """``epoch E, batch B`` for log lines (1-based epoch, batches of it already done)."""
        return f"epoch {self.epoch + 1}, batch {self.batch}"

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _STATE_KEYS}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> TrainState:
        return cls(**{key: payload[key] for key in _STATE_KEYS})


@dataclass
class RunParts:
    """What one run builds once: the model (and its DDP wrapper), optimisation, data, logs."""

    model: MFCLIP
    ddp_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    train_data: ManifestDataset
    val_data: ManifestDataset
    steps_per_epoch: int
    logs: RunLogs

    def resume_payload(self, state: TrainState, env: DistEnv) -> dict[str, Any]:
        """Everything a resume needs: optimiser, schedule, scaler, loop state, every rank's RNG.

        A collective under DDP (the RNG states are gathered): call it on every rank.
        """
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            **state.to_dict(),
            "rng": env.gather_objects(capture_rng()),
        }

    def restore(self, payload: dict[str, Any], env: DistEnv) -> TrainState:
        """Load a resume payload into the parts; returns the loop state it holds."""
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        rng = payload["rng"]
        restore_rng(rng[min(env.rank, len(rng) - 1)])
        return TrainState.from_dict(payload)
