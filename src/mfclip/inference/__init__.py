"""Inference: inputs, the decoding pipeline, the one scoring loop, the detector, explanations.

Names are imported lazily so that importing the package (for instance by worker processes that
only decode) does not pay for the model until it is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

if TYPE_CHECKING:
    from .detector import Detection, Detector, DetectorStats
    from .explain import Explanation
    from .inputs import expand_inputs
    from .scoring import Scorer, Scores

_LAZY = {
    "Detection": "detector",
    "Detector": "detector",
    "DetectorStats": "detector",
    "Explanation": "explain",
    "expand_inputs": "inputs",
    "Scorer": "scoring",
    "Scores": "scoring",
}

__all__ = [
    "Detection",
    "Detector",
    "DetectorStats",
    "Explanation",
    "Scorer",
    "Scores",
    "expand_inputs",
]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
