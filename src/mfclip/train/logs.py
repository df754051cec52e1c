"""The run's logs: ``train_log.csv``, ``val_log.csv`` and, when installed, TensorBoard.

Only the main process writes; the other ranks get a :class:`RunLogs` with ``enabled=False``, so
the loop calls it the same way everywhere.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RunLogs", "append_csv"]

log = logging.getLogger(__name__)

#: Columns of ``val_log.csv``, in order.
VAL_COLUMNS = ("epoch", "n", "loss", "auc", "ap", "acc@0.5", "acc@thr", "threshold")


def append_csv(path: Path, row: dict[str, Any]) -> None:
    """Append ``row``, writing the header first when the file is new (resumed runs append)."""
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _summary_writer(directory: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed: logging to CSV only")
        return None
    return SummaryWriter(str(directory))


class RunLogs:
    """CSV files in ``run_dir`` plus an optional TensorBoard writer (main process only)."""

    def __init__(self, run_dir: Path, tensorboard: bool, enabled: bool = True) -> None:
        self.enabled = enabled
        self.train_csv = run_dir / "train_log.csv"
        self.val_csv = run_dir / "val_log.csv"
        self.writer = _summary_writer(run_dir / "tensorboard") if enabled and tensorboard else None

    def train(self, epoch: int, step: int, lr: float, window: list[dict[str, float]]) -> None:
        """Mean of the loss terms since the last log line (``epoch`` is 0-based)."""
        if not (self.enabled and window):
            return
        means = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
        append_csv(self.train_csv, {"epoch": epoch + 1, "step": step, "lr": lr, **means})
        if self.writer is not None:
            for key, value in {"lr": lr, **means}.items():
                self.writer.add_scalar(f"train/{key}", value, step)

    def validation(self, val: dict[str, Any], step: int) -> None:
        """One epoch's validation result, to the log, ``val_log.csv`` and TensorBoard."""
        if not self.enabled:
            return
        keys = ("epoch", "auc", "ap", "loss", "acc@thr", "threshold", "n")
        log.info(
            "epoch %d validation: auc=%.4f ap=%.4f loss=%.4f acc@thr=%.4f (thr=%.3f, n=%d)",
            *(val[k] for k in keys),
        )
        append_csv(self.val_csv, {k: val[k] for k in VAL_COLUMNS})
        if self.writer is not None:
            for key in ("loss", "auc", "ap", "acc@thr"):
                self.writer.add_scalar(f"val/{key}", val[key], step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
