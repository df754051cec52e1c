"""Operating points: a threshold chosen by a stated rule, rates at it, and an uncertain band.

Rules, applied to (calibrated) validation probabilities, "fake" meaning ``p >= threshold``:

* ``eer``: where the false positive and false negative rates meet (interpolated);
* ``youden``: the ROC point maximising ``TPR - FPR``;
* ``best_acc``: the highest accuracy;
* ``fpr=X``: the lowest threshold that flags at most a fraction ``X`` of the real images;
* ``tpr=X``: the highest threshold that still catches at least a fraction ``X`` of the fakes;
* ``fixed`` (0.5) or ``fixed=X``.

``fpr=X`` and ``tpr=X`` meet their target exactly on the data they were fitted on; on new
data they hold as well as that data resembles it, which the report and the verdict say.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ConfigError
from .ranking import roc_curve
from .thresholds import threshold_at_eer, threshold_for_best_accuracy
from .validation import both_classes, check_binary

__all__ = [
    "RULES",
    "coverage_curve",
    "fpr_at_tpr",
    "parse_rule",
    "rates_at",
    "threshold_for_rule",
    "tpr_at_fpr",
    "uncertain_band",
]

RULES = ("eer", "youden", "best_acc", "fixed", "fpr=X", "tpr=X", "fixed=X")


def parse_rule(rule: str) -> tuple[str, float | None]:
    """``"fpr=0.01"`` -> ``("fpr", 0.01)``; ``"eer"`` -> ``("eer", None)``; checks ranges."""
    text = str(rule).strip().lower()
    name, _, value = text.partition("=")
    if name in ("eer", "youden", "best_acc") and not value:
        return name, None
    if name == "fixed" and not value:
        return "fixed", 0.5
    if name in ("fpr", "tpr", "fixed") and value:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not 0.0 <= number <= 1.0:
            raise ValueError(f"threshold rule {rule!r}: {name} must be a number in [0, 1]")
        return name, number
    raise ValueError(f"unknown threshold rule {rule!r} (use {', '.join(RULES)})")


def rates_at(labels: ArrayLike, probs: ArrayLike, threshold: float) -> tuple[float, float]:
    """``(FPR, TPR)`` when ``p >= threshold`` is called fake (NaN for an absent class)."""
    y, p = check_binary(labels, probs)
    flagged = p >= threshold
    real, fake = y == 0, y == 1
    fpr = float(flagged[real].mean()) if real.any() else math.nan
    tpr = float(flagged[fake].mean()) if fake.any() else math.nan
    return fpr, tpr


def _threshold_for_fpr(y: np.ndarray, p: np.ndarray, target: float) -> float:
    reals = np.sort(p[y == 0])[::-1]  # descending
    allowed = math.floor(target * len(reals) + 1e-9)  # reals that may be flagged
    if allowed >= len(reals):
        return float(min(p.min(), reals[-1]))  # flag everything
    # Just above the (allowed+1)-th highest real score: it and every real below stay unflagged.
    return float(np.nextafter(reals[allowed], np.inf))


def _threshold_for_tpr(y: np.ndarray, p: np.ndarray, target: float) -> float:
    fakes = np.sort(p[y == 1])[::-1]
    needed = max(1, math.ceil(target * len(fakes) - 1e-9))
    return float(fakes[min(needed, len(fakes)) - 1])


def threshold_for_rule(rule: str, labels: ArrayLike, probs: ArrayLike) -> float:
    """The decision threshold on p(fake) given by ``rule`` (see the module docstring).

    A rule that needs both classes falls back to 0.5 when one is missing.
    """
    name, value = parse_rule(rule)
    if name == "fixed":
        return float(value)
    y, p = check_binary(labels, probs)
    if not both_classes(y):
        return 0.5
    if name == "fpr":
        return _threshold_for_fpr(y, p, value)
    if name == "tpr":
        return _threshold_for_tpr(y, p, value)
    if name == "eer":
        threshold = threshold_at_eer(y, p)
    elif name == "best_acc":
        threshold = threshold_for_best_accuracy(y, p)
    else:  # youden
        fpr, tpr, thresholds = roc_curve(y, p)
        best = int(np.argmax(tpr - fpr))
        threshold = float(min(thresholds[best], 1.0))
    if threshold is None or not math.isfinite(threshold):
        return 0.5
    return float(threshold)


def tpr_at_fpr(labels: ArrayLike, probs: ArrayLike, fpr: float) -> float:
    """The share of fakes caught when at most ``fpr`` of the reals may be flagged."""
    y, p = check_binary(labels, probs)
    if not both_classes(y):
        return math.nan
    return rates_at(y, p, _threshold_for_fpr(y, p, fpr))[1]


def fpr_at_tpr(labels: ArrayLike, probs: ArrayLike, tpr: float) -> float:
    """The share of reals flagged when at least ``tpr`` of the fakes must be caught."""
    y, p = check_binary(labels, probs)
    if not both_classes(y):
        return math.nan
    return rates_at(y, p, _threshold_for_tpr(y, p, tpr))[0]


def coverage_curve(
    labels: ArrayLike, probs: ArrayLike, threshold: float, points: int = 21
) -> list[dict[str, float]]:
    """Coverage against accuracy as the uncertain band ``|p - threshold| < d`` widens.

    One row per ``d`` from 0 (no abstention) to the widest distance seen, ``points`` rows.
    """
    y, p = check_binary(labels, probs)
    distance = np.abs(p - threshold)
    correct = (p >= threshold) == (y == 1)
    rows = []
    for d in np.linspace(0.0, float(distance.max()), points):
        kept = distance >= d
        rows.append(
            {
                "band": float(d),
                "coverage": float(kept.mean()),
                "accuracy": float(correct[kept].mean()) if kept.any() else math.nan,
            }
        )
    return rows


def _edge_candidates(values: np.ndarray, extra: tuple[float, ...], limit: int | None) -> np.ndarray:
    """Distinct scores of one side (``limit`` quantiles of them when given), plus ``extra``."""
    distinct = np.unique(values)
    if limit is not None and len(distinct) > limit:
        distinct = np.unique(np.quantile(values, np.linspace(0.0, 1.0, limit), method="lower"))
    return np.unique(np.concatenate([distinct, np.asarray(extra, dtype=np.float64)]))


def _first_reaching(gain: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Per ``need``: the first index whose ``gain`` reaches it (``len(gain)`` when none)."""
    best_so_far = np.maximum.accumulate(gain)
    return np.searchsorted(best_so_far, need - 1e-9, side="left")


def uncertain_band(
    labels: ArrayLike,
    probs: ArrayLike,
    threshold: float,
    target_accuracy: float,
    candidates: int | None = None,
) -> dict[str, Any] | None:
    """The band ``(lo, hi)``, ``lo <= threshold <= hi``, that abstains least for the target.

    A probability inside the open band is *uncertain*; ``p >= hi`` is called fake and
    ``p <= lo`` real (as :meth:`mfclip.operating.OperatingPoint.label` does). The two edges
    are chosen independently, so errors crowded on one side of the threshold do not widen the
    band on the other. Candidate edges are the scores on each side (every distinct one, or
    ``candidates`` quantiles of them); with prefix sums over the sorted scores, the band with
    the largest coverage whose covered accuracy reaches ``target_accuracy`` is found exactly
    in ``O(n log n)``; ties go to the narrower band. ``None`` when no abstention is needed;
    raises when no band reaching the target covers 10 % of the data.
    """
    if not 0.5 < target_accuracy < 1.0:
        raise ConfigError(f"target accuracy must lie in (0.5, 1), got {target_accuracy}")
    y, p = check_binary(labels, probs)
    thr, t = float(threshold), float(target_accuracy)
    if float(((p >= thr) == (y == 1)).mean()) >= t:
        return None
    order = np.argsort(p, kind="stable")
    p_sorted = p[order]
    fakes_up_to = np.concatenate([[0], np.cumsum(y[order])])  # fakes among the i lowest
    n, n_fake = len(p), int(fakes_up_to[-1])
    los = _edge_candidates(p[p < thr], (0.0, thr), candidates)
    his = _edge_candidates(p[p >= thr], (thr, 1.0), candidates)
    los, his = los[los <= thr], his[his >= thr]  # ascending; his[0] == thr
    # Covered as real: p <= lo (right when real); covered as fake: p >= hi (right when fake).
    below = np.searchsorted(p_sorted, los, side="right")
    start = np.searchsorted(p_sorted, his, side="left")
    real_kept, real_right = below, below - fakes_up_to[below]
    fake_kept, fake_right = n - start, n_fake - fakes_up_to[start]
    # Accuracy >= t  <=>  fake_right - t fake_kept >= t real_kept - real_right. For each lo the
    # lowest hi meeting that covers most (and is the narrowest band of that coverage).
    gain, need = fake_right - t * fake_kept, t * real_kept - real_right
    j = _first_reaching(gain, need)
    # lo == hi == threshold is the no-band decision (known to miss): that row needs hi > thr.
    last = np.flatnonzero(los == thr)
    j[last] = 1 + _first_reaching(gain[1:], need[last])
    ok = j < len(his)
    if not ok.any():
        raise ConfigError(_NO_BAND.format(t))
    i_ok, j_ok = np.flatnonzero(ok), j[ok]
    kept = real_kept[i_ok] + fake_kept[j_ok]
    width = his[j_ok] - los[i_ok]
    best = int(np.lexsort((width, -kept))[0])  # most covered, then narrowest
    i, jb = int(i_ok[best]), int(j_ok[best])
    covered = int(kept[best])
    if covered < 0.1 * n:
        raise ConfigError(_NO_BAND.format(t))
    return {
        "lo": float(los[i]),
        "hi": float(his[jb]),
        "target_accuracy": t,
        "coverage": covered / n,
        "accuracy": float(real_right[i] + fake_right[jb]) / covered,
    }


_NO_BAND = (
    "no band reaches {:.0%} accuracy while covering at least 10% of the data; lower the "
    "target or give the band explicitly"
)
