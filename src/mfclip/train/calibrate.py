"""After model selection: fit the best checkpoint's calibration and operating point on validation.

Selection ranks checkpoints by a ranking metric (AUC by default), which no monotone calibration
changes; the probability users read and the threshold they act on are fitted afterwards, once,
on the same validation split, and stored in the best checkpoint's ``config.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..data.dataset import ManifestDataset
from ..evaluate.fitting import apply_operating_point, fit_operating_point
from ..loading import load_model
from ..model.persistence import read_pointer
from .config import TrainConfig
from .distributed import DistEnv
from .selection import validation_scores

__all__ = ["calibrate_best"]

log = logging.getLogger(__name__)


def calibrate_best(
    run_dir: Path, cfg: TrainConfig, env: DistEnv, val_data: ManifestDataset
) -> dict[str, Any] | None:
    """Fit and store the best checkpoint's operating point; ``None`` when there is none.

    Every rank scores its shard of the validation split; rank 0 fits and rewrites the folder.
    A split that cannot be fitted (one class only) leaves the model uncalibrated, with a
    warning, rather than failing a finished training run.
    """
    best = read_pointer(run_dir, "best")
    if best is None:
        return None
    model = load_model(best["path"], env.device)
    model.set_calibration(None)  # fit on raw margins even when refitting
    # float32, as every user path scores: an fpr=X threshold sits one ulp above a real score
    val = validation_scores(model, val_data, cfg, env, amp="none")
    try:
        fitted = fit_operating_point(
            val.margins,
            val.labels,
            method=cfg.calibration,
            rule=cfg.threshold,
            band=cfg.uncertain_accuracy,
            fitted_on="the validation split",
        )
    except ValueError as exc:
        if env.is_main:
            log.warning("calibration skipped: %s", exc)
        return None
    if env.is_main:
        apply_operating_point(model, fitted)
        model.save_pretrained(best["path"])
        before, after = (fitted["calibration_report"][k] for k in ("before", "after"))
        log.info(
            "calibrated %s (%s): ECE %.4f -> %.4f, NLL %.4f -> %.4f; threshold %.4f by %s",
            Path(best["path"]).name, cfg.calibration, before["ece"], after["ece"],
            before["nll"], after["nll"], fitted["threshold"], cfg.threshold,
        )  # fmt: skip
    env.barrier()
    return fitted
