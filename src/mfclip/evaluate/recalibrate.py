"""Refit a trained model's calibration and operating point on a labelled set the user owns.

``mfclip calibrate`` runs this: a folder of one's own real photos plus known fakes (any
manifest) gives probabilities and a threshold that describe *those* images, without
retraining. The weights are untouched; the result is a model folder every command accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import ManifestDataset
from ..data.transforms import build_eval_transform
from ..model.mfclip import MFCLIP
from .fitting import apply_operating_point, fit_operating_point
from .runner import score_dataset

__all__ = ["RecalibrateOptions", "recalibrate"]


@dataclass
class RecalibrateOptions:
    """Which rows to fit on and what to fit."""

    split: str | None = "val"
    root: str | None = None
    method: str = "temperature"
    rule: str = "eer"
    #: ``None``, a target accuracy in (0.5, 1), or an explicit ``(lo, hi)`` band.
    band: tuple[float, float] | float | None = None
    batch_size: int = 64
    num_workers: int = 2
    progress: bool = True


def recalibrate(
    model: MFCLIP, manifest: str | Path, options: RecalibrateOptions | None = None
) -> dict[str, Any]:
    """Score ``manifest`` with the raw model, fit, and apply the result to ``model``.

    Returns the fitted entries (with ``calibration_report`` before/after) and the number of
    files that could not be read.
    """
    opts = options or RecalibrateOptions()
    model.set_calibration(None)  # fit on raw margins, whatever was there before
    dataset = ManifestDataset(
        manifest, build_eval_transform(model.config.preprocess), split=opts.split, root=opts.root
    )
    records = score_dataset(
        model, dataset, opts.batch_size, opts.num_workers, progress=opts.progress, desc="calibrate"
    )
    if not records:
        raise ValueError(f"{manifest}: no sample could be scored")
    margins = np.array([r["margin"] for r in records])
    labels = np.array([r["label"] for r in records])
    where = f"{Path(manifest).name} [{opts.split or 'all rows'}]"
    fitted = fit_operating_point(
        margins, labels, method=opts.method, rule=opts.rule, band=opts.band, fitted_on=where
    )
    apply_operating_point(model, fitted)
    fitted["skipped_files"] = dataset.bad_count
    return fitted
