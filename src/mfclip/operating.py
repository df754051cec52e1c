"""The operating point a model ships with, and the words for a verdict (torch-free).

A saved model records, in ``config.json`` (``training``), how its probabilities were
calibrated, the decision threshold, the rule that chose it, what that rule measured on the data
it was fitted on (false and true positive rates), and optionally an *uncertain* band. This
module turns that record into a label (``real``, ``fake`` or ``uncertain``) and a sentence a
person can act on. ``Detector``, the CLI, the service and the ONNX runtime all use it, so the
same probability gets the same verdict and the same words everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LABELS", "OperatingPoint"]

LABELS = ("real", "fake", "uncertain")


def _one_in(rate: float) -> str:
    """How many real photos a rate flags: "about 1 in 81", "about 52% of the", "none of the"."""
    if rate <= 0:
        return "none of the"
    if rate >= 0.5:
        return f"about {rate:.0%} of the"
    return f"about 1 in {round(1 / rate):,}"


@dataclass(frozen=True)
class OperatingPoint:
    """Threshold, the rule behind it, its measured rates, and an optional uncertain band.

    ``band`` is the open interval ``(lo, hi)`` around the threshold in which the verdict is
    ``uncertain``; ``p >= hi`` is ``fake`` and ``p <= lo`` is ``real``. Without a band,
    ``p >= threshold`` is ``fake``.
    """

    threshold: float = 0.5
    rule: str = "default 0.5"
    #: False / true positive rate the rule gave on the data it was fitted on.
    fpr: float | None = None
    tpr: float | None = None
    #: What that data was (``"validation split (n=412)"``).
    fitted_on: str | None = None
    band: tuple[float, float] | None = None
    calibration: str = "none"

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0 or not math.isfinite(self.threshold):
            raise ValueError(f"threshold must lie in [0, 1], got {self.threshold}")
        if self.band is not None:
            lo, hi = self.band
            if not lo <= self.threshold <= hi:
                raise ValueError(f"uncertain band {self.band} must contain the threshold")

    @classmethod
    def from_training_info(
        cls, info: Mapping[str, Any] | None, threshold: float | None = None
    ) -> OperatingPoint:
        """Read what training or ``mfclip calibrate`` stored; ``threshold`` overrides it.

        An overridden threshold drops the stored rule, rates and band (they describe another
        threshold).
        """
        info = dict(info or {})
        calibration = str((info.get("calibration") or {}).get("method", "none"))
        if threshold is not None:
            return cls(float(threshold), "given by the user", calibration=calibration)
        point = dict(info.get("operating_point") or {})
        band = info.get("uncertain")
        return cls(
            threshold=float(info.get("threshold", 0.5)),
            rule=str(info.get("threshold_rule", "default 0.5")),
            fpr=_number(point.get("fpr")),
            tpr=_number(point.get("tpr")),
            fitted_on=point.get("fitted_on"),
            band=(float(band["lo"]), float(band["hi"])) if band else None,
            calibration=calibration,
        )

    def label(self, prob: float) -> str:
        """``real``, ``fake`` or (inside the band) ``uncertain``."""
        if self.band is not None:
            lo, hi = self.band
            if lo < prob < hi:
                return "uncertain"
            return "fake" if prob >= hi else "real"
        return "fake" if prob >= self.threshold else "real"

    def _rule_words(self) -> str:
        where = f" on {self.fitted_on}" if self.fitted_on else ""
        if self.fpr is not None and math.isfinite(self.fpr):
            flagged = _one_in(self.fpr)
            caught = f", and caught {self.tpr:.0%} of the fakes" if self.tpr is not None else ""
            return (
                f"threshold {self.threshold:.3f} ({self.rule}) flagged {flagged} real photos{where}"
                f"{caught}; expect a similar rate on real photos like those"
            )
        return f"threshold {self.threshold:.3f} ({self.rule})"

    def describe(self, prob: float) -> str:
        """The verdict in plain words, with the rule behind it and, when needed, why a
        probability below one half can still be flagged (or one above it pass)."""
        label = self.label(prob)
        calibrated = "calibrated " if self.calibration != "none" else "uncalibrated "
        head = f"{label.upper()}: {calibrated}probability of a forgery {prob:.1%}"
        if label == "uncertain":
            lo, hi = self.band
            return (
                f"{head}, inside the uncertain band {lo:.3f}-{hi:.3f}, where the model was "
                f"not reliable enough on its checking data; have a person look. "
                f"({self._rule_words()})"
            )
        why = ""
        if label == "fake" and prob < 0.5:
            why = (
                " Flagged although below 50 %, because the operating point was chosen to "
                "catch fakes at this rate, not to call only likely fakes."
            )
        elif label == "real" and prob >= 0.5:
            why = (
                " Not flagged although above 50 %, because the operating point was chosen to "
                "keep false alarms on real photos rare."
            )
        return f"{head}; {self._rule_words()}.{why}"

    def summary(self) -> str:
        """How verdicts are decided, in one line (for logs, the CLI and the service)."""
        calibrated = "calibrated" if self.calibration != "none" else "uncalibrated"
        band = ""
        if self.band is not None:
            band = f", uncertain between {self.band[0]:.3f} and {self.band[1]:.3f}"
        return f"{calibrated} probabilities, {self._rule_words()}{band}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "rule": self.rule,
            "fpr": self.fpr,
            "tpr": self.tpr,
            "fitted_on": self.fitted_on,
            "band": list(self.band) if self.band else None,
            "calibration": self.calibration,
        }


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
