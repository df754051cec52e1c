"""Robustness sweep: the same split scored again under each perturbation, real and fake alike.

Each perturbation is part of the dataset's transform, so it reaches every image, whatever its
label. Besides the ranking metrics (AUC, AP, EER) each row gives the false and true positive
rates at the model's stored threshold: after social-media processing the ranking may survive
while the share of real photos flagged at the fixed threshold does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.dataset import ManifestDataset
from ..data.perturbations import Perturbation, PerturbedTransform
from ..data.transforms import build_eval_transform
from ..distributed import DistEnv
from ..errors import ManifestError
from ..model.mfclip import MFCLIP
from .score_records import score_dataset
from .summary import summarize

__all__ = ["robustness_sweep"]


def _row(records: list[dict[str, Any]], threshold: float, what: str) -> dict[str, Any]:
    summary = summarize(
        [r["label"] for r in records],
        [r["score"] for r in records],
        threshold=threshold,
        bootstrap=0,
    )
    return {"perturbation": what, **summary}


def robustness_sweep(
    model: MFCLIP,
    manifest: str | Path,
    perturbations: Sequence[Perturbation],
    clean: list[dict[str, Any]],
    threshold: float,
    *,
    split: str | None = "test",
    root: str | None = None,
    seed: int = 0,
    batch_size: int = 64,
    num_workers: int = 2,
    progress: bool = True,
    env: DistEnv | None = None,
) -> dict[str, dict[str, Any]]:
    """``{"clean": ..., label: ...}`` overall metrics per setting (``summarize`` + a description).

    ``clean`` are the split's unperturbed records (already scored), so the clean row equals
    the main report.
    """
    base = build_eval_transform(model.config.preprocess)
    rows = {"clean": _row(clean, threshold, "none")}
    for pert in perturbations:
        dataset = ManifestDataset(
            manifest, PerturbedTransform(pert, base), split=split, root=root, seed=seed
        )
        records = score_dataset(
            model, dataset, batch_size, num_workers, progress=progress, desc=pert.label, env=env
        )
        if not records:
            raise ManifestError(f"{manifest}: no sample could be scored under {pert.label}")
        rows[pert.label] = _row(records, threshold, pert.description)
    return rows
