"""Model selection on validation data: score the split, fix the threshold, compare epochs.

The best checkpoint and its decision threshold come from the validation split only; the test
split is never read during training.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.dataset import ManifestDataset
from ..evaluate import metrics
from ..model.mfclip import MFCLIP
from .config import TrainConfig
from .data import validation_loader
from .distributed import DistEnv
from .optim import autocast

__all__ = ["is_better", "pick_threshold", "validate"]


def pick_threshold(rule: str, labels: np.ndarray, scores: np.ndarray) -> float:
    """The decision threshold on p(fake) by ``rule`` (``eer``, ``best_acc``, else 0.5)."""
    if rule == "eer":
        threshold = metrics.threshold_at_eer(labels, scores)
    elif rule == "best_acc":
        threshold = metrics.threshold_for_best_accuracy(labels, scores)
    else:
        threshold = 0.5
    if threshold is None or not math.isfinite(threshold):
        return 0.5
    return float(threshold)


def is_better(select_metric: str, value: float | None, best: float | None) -> bool:
    """Whether ``value`` beats ``best`` (lower is better for ``loss``, higher otherwise)."""
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if select_metric == "loss" else value > best


@torch.no_grad()
def validate(
    model: MFCLIP, dataset: ManifestDataset, cfg: TrainConfig, env: DistEnv
) -> dict[str, Any]:
    """Scores of the validation split (sharded over ranks, gathered), metrics, threshold.

    ``loss`` is the classifier's mean cross-entropy on the split. Keys: ``n``, ``loss``,
    ``auc``, ``ap``, ``acc@0.5``, ``threshold``, ``acc@thr``.
    """
    was_training = model.training
    model.eval()
    rows: list[tuple[int, int, float]] = []
    loss_sum, loss_n = 0.0, 0
    for batch in validation_loader(cfg, env, dataset):
        if batch is None:
            continue
        images = batch["image"].to(env.device, non_blocking=True)
        labels = batch["label"].to(env.device)
        with autocast(cfg.amp, env.device):
            out = model(images)
        # Per-sample cross-entropy: unlike the contrastive terms it does not depend on how
        # the split is cut into batches (or shared among ranks).
        loss_sum += float(F.cross_entropy(out.logits.float(), labels, reduction="sum"))
        loss_n += len(images)
        probs = out.fake_prob.float().cpu().tolist()
        rows.extend(zip(batch["index"].tolist(), batch["label"].tolist(), probs, strict=True))
    model.train(was_training)
    gathered = env.gather_objects((rows, loss_sum, loss_n))
    all_rows = sorted(r for part in gathered for r in part[0])
    labels_np = np.array([r[1] for r in all_rows])
    scores = np.array([r[2] for r in all_rows])
    total_n = sum(part[2] for part in gathered)
    threshold = pick_threshold(cfg.threshold, labels_np, scores)
    return {
        "n": len(all_rows),
        "loss": sum(part[1] for part in gathered) / max(total_n, 1),
        "auc": metrics.roc_auc(labels_np, scores),
        "ap": metrics.average_precision(labels_np, scores),
        "acc@0.5": metrics.accuracy(labels_np, scores, 0.5),
        "threshold": threshold,
        "acc@thr": metrics.accuracy(labels_np, scores, threshold),
    }
