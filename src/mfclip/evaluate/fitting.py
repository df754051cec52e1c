"""Fit a model's operating point on labelled data: calibration, threshold rule, uncertain band.

Training calls :func:`fit_operating_point` on the validation split after model selection, and
``mfclip calibrate`` on any labelled set a user owns. The result goes into the model's
``training_info`` (``config.json``), never into its weights; the calibrated probabilities it
reports are computed by the model's own :class:`~mfclip.model.calibration.Calibration`, so the
threshold is fitted on exactly the numbers every path will later report.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from ..model.calibration import Calibration
from ..model.mfclip import MFCLIP
from .calibration import calibration_summary, fit_calibration
from .operating import parse_rule, rates_at, threshold_for_rule, uncertain_band
from .validation import check_binary

__all__ = ["apply_operating_point", "calibrated_probs", "fit_operating_point"]

#: training_info keys an operating point sets (cleared before a refit).
KEYS = ("calibration", "threshold", "threshold_rule", "operating_point", "uncertain")


def calibrated_probs(spec: dict[str, Any] | None, margins: ArrayLike) -> np.ndarray:
    """What the model reports for raw margins under calibration ``spec`` (same arithmetic)."""
    z = torch.as_tensor(np.asarray(margins, dtype=np.float32))
    logits = torch.stack([torch.zeros_like(z), z], dim=1)
    with torch.no_grad():
        return Calibration().load(spec)(logits).double().numpy()


def fit_operating_point(
    margins: ArrayLike,
    labels: ArrayLike,
    *,
    method: str = "temperature",
    rule: str = "eer",
    band: tuple[float, float] | float | None = None,
    fitted_on: str = "the validation split",
) -> dict[str, Any]:
    """Calibration + threshold + optional band from raw logit margins and 0/1 labels.

    ``band``: ``None`` (no abstention), ``(lo, hi)`` given, or a target accuracy in (0.5, 1)
    from which the narrowest band is derived. Returns the ``training_info`` entries plus a
    ``calibration_report`` (ECE, Brier, NLL before and after).
    """
    parse_rule(rule)  # fail on a bad rule before fitting anything
    y, z = check_binary(labels, margins)
    spec = fit_calibration(z, y, method)
    probs = calibrated_probs(spec, z)
    raw = calibrated_probs(None, z)
    threshold = threshold_for_rule(rule, y, probs)
    fpr, tpr = rates_at(y, probs, threshold)
    description = f"{fitted_on} (n={len(y)}: {int((y == 0).sum())} real, {int(y.sum())} fake)"
    fitted: dict[str, Any] = {
        "calibration": spec,
        "threshold": float(threshold),
        "threshold_rule": str(rule),
        "operating_point": {"fpr": fpr, "tpr": tpr, "fitted_on": description},
        "uncertain": None,
        "calibration_report": {
            "before": calibration_summary(y, raw),
            "after": calibration_summary(y, probs),
        },
    }
    if isinstance(band, tuple):
        lo, hi = (float(v) for v in band)
        if not 0.0 <= lo <= threshold <= hi <= 1.0:
            raise ValueError(
                f"uncertain band ({lo}, {hi}) must lie in [0, 1] and contain the threshold "
                f"{threshold:.4f}"
            )
        fitted["uncertain"] = {"lo": lo, "hi": hi, "given": True}
    elif band is not None:
        fitted["uncertain"] = uncertain_band(y, probs, threshold, float(band))
    return fitted


def apply_operating_point(model: MFCLIP, fitted: dict[str, Any]) -> MFCLIP:
    """Store ``fitted`` in ``model.training_info`` and switch its calibration on."""
    info = {k: v for k, v in model.training_info.items() if k not in KEYS}
    info.update({k: v for k, v in fitted.items() if k != "calibration" and v is not None})
    model.training_info = info
    model.set_calibration(fitted["calibration"])
    if fitted.get("calibration_report") is not None:
        model.training_info["calibration_report"] = fitted["calibration_report"]
    return model
