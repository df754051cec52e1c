"""Model selection on validation data: score the split, fix the threshold, compare epochs.

The best checkpoint and its decision threshold come from the validation split only; the test
split is never read during training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch.nn.functional as F

from ..data.dataset import ManifestDataset
from ..errors import ManifestError
from ..evaluate import metrics
from ..evaluate.operating import threshold_for_rule
from ..inference.scoring import Scorer
from ..model.mfclip import MFCLIP
from .config import TrainConfig
from .data import validation_loader
from .distributed import DistEnv

__all__ = ["ValidationScores", "is_better", "validate", "validation_scores"]


def is_better(select_metric: str, value: float | None, best: float | None) -> bool:
    """Whether ``value`` beats ``best`` (lower is better for ``loss``, higher otherwise)."""
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if select_metric == "loss" else value > best


@dataclass
class ValidationScores:
    """Every validation sample's score, gathered from all ranks, in dataset order."""

    indices: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    #: Raw logit margins (what calibration is fitted on).
    margins: np.ndarray
    #: The classifier's mean cross-entropy on the split.
    loss: float


def validation_scores(
    model: MFCLIP,
    dataset: ManifestDataset,
    cfg: TrainConfig,
    env: DistEnv,
    amp: str | None = None,
) -> ValidationScores:
    """Score the validation split with the one scoring loop (sharded over ranks, gathered).

    ``amp`` overrides ``cfg.amp``: calibration is fitted in float32, as users score.
    """
    scorer = Scorer(model, amp=cfg.amp if amp is None else amp)
    rows: list[tuple[int, int, float, float]] = []
    loss_sum, loss_n = 0.0, 0
    for batch, scores in scorer.batches(validation_loader(cfg, env, dataset)):
        # Per-sample cross-entropy: unlike the contrastive terms it does not depend on how
        # the split is cut into batches (or shared among ranks).
        loss_sum += float(F.cross_entropy(scores.logits, batch["label"], reduction="sum"))
        loss_n += len(scores)
        rows.extend(
            zip(
                batch["index"].tolist(),
                batch["label"].tolist(),
                scores.fake_prob.tolist(),
                scores.margin.tolist(),
                strict=True,
            )
        )
    gathered = env.gather_objects((rows, loss_sum, loss_n))
    all_rows = sorted(r for part in gathered for r in part[0])
    total_n = sum(part[2] for part in gathered)
    return ValidationScores(
        indices=np.array([r[0] for r in all_rows], dtype=np.int64),
        labels=np.array([r[1] for r in all_rows], dtype=np.int64),
        scores=np.array([r[2] for r in all_rows], dtype=np.float64),
        margins=np.array([r[3] for r in all_rows], dtype=np.float64),
        loss=sum(part[1] for part in gathered) / max(total_n, 1),
    )


def validate(
    model: MFCLIP, dataset: ManifestDataset, cfg: TrainConfig, env: DistEnv
) -> dict[str, Any]:
    """Metrics and the decision threshold of the validation split.

    Keys: ``n``, ``loss``, ``auc``, ``ap``, ``acc@0.5``, ``threshold``, ``acc@thr``.
    """
    val = validation_scores(model, dataset, cfg, env)
    labels, scores = val.labels, val.scores
    if len(scores) == 0:
        raise ManifestError(
            f"no validation sample could be read ({dataset.bad_count} unreadable on this "
            f"process): check the '{cfg.data.val_split}' rows' paths, or data.root"
        )
    threshold = threshold_for_rule(cfg.threshold, labels, scores)
    return {
        "n": len(scores),
        "loss": val.loss,
        "auc": metrics.roc_auc(labels, scores),
        "ap": metrics.average_precision(labels, scores),
        "acc@0.5": metrics.accuracy(labels, scores, 0.5),
        "threshold": threshold,
        "acc@thr": metrics.accuracy(labels, scores, threshold),
    }
