"""Calibration: measuring it (ECE, Brier, NLL, reliability) and fitting it on validation data.

The fitted map is applied by the model itself (:class:`mfclip.model.calibration.Calibration`);
this module only finds its parameters from raw logit margins and labels, and measures how well
probabilities match frequencies. Fitting happens after model selection, on the validation split
(or on a user's own labelled set with ``mfclip calibrate``), never on test data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .validation import both_classes, check_binary

__all__ = [
    "DEFAULT_BINS",
    "brier_score",
    "calibration_summary",
    "expected_calibration_error",
    "fit_calibration",
    "negative_log_likelihood",
    "reliability_bins",
]

#: Equal-width bins of the expected calibration error (Guo et al., 2017).
DEFAULT_BINS = 15
_EPS = 1e-7


def _bin_edges(probs: np.ndarray, bins: int, adaptive: bool) -> np.ndarray:
    if not adaptive:
        return np.linspace(0.0, 1.0, bins + 1)
    # Equal-mass bins: quantiles of the scores (the adaptive ECE of Nixon et al., 2019).
    edges = np.quantile(probs, np.linspace(0.0, 1.0, bins + 1))
    edges[0], edges[-1] = 0.0, 1.0
    return edges


def reliability_bins(
    labels: ArrayLike, probs: ArrayLike, bins: int = DEFAULT_BINS, adaptive: bool = False
) -> list[dict[str, float]]:
    """Per non-empty bin: ``lo``, ``hi``, ``n``, mean ``confidence`` and fake ``frequency``.

    A bin holds ``lo <= p < hi`` (the last one includes 1.0).
    """
    y, p = check_binary(labels, probs)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    edges = _bin_edges(p, bins, adaptive)
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            out.append(
                {
                    "lo": float(edges[b]),
                    "hi": float(edges[b + 1]),
                    "n": int(mask.sum()),
                    "confidence": float(p[mask].mean()),
                    "frequency": float(y[mask].mean()),
                }
            )
    return out


def expected_calibration_error(
    labels: ArrayLike, probs: ArrayLike, bins: int = DEFAULT_BINS, adaptive: bool = False
) -> float:
    """``sum_b n_b / N * |frequency_b - confidence_b|`` over bins of p(fake).

    Binary form: the confidence is the predicted probability of the *fake* class and the
    frequency the fraction of fakes in the bin (reliability of p(fake) itself).
    """
    rows = reliability_bins(labels, probs, bins, adaptive)
    total = sum(r["n"] for r in rows)
    if total == 0:
        return math.nan
    return float(sum(r["n"] * abs(r["frequency"] - r["confidence"]) for r in rows) / total)


def brier_score(labels: ArrayLike, probs: ArrayLike) -> float:
    """Mean squared error of p(fake) against the 0/1 label (scikit-learn)."""
    from sklearn.metrics import brier_score_loss

    y, p = check_binary(labels, probs)
    return float(brier_score_loss(y, p, pos_label=1))


def negative_log_likelihood(labels: ArrayLike, probs: ArrayLike) -> float:
    """Mean ``-log p(true class)``, probabilities clipped to ``[1e-7, 1 - 1e-7]``."""
    y, p = check_binary(labels, probs)
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def calibration_summary(labels: ArrayLike, probs: ArrayLike) -> dict[str, float]:
    """``ece`` (15 equal-width bins), ``ece_adaptive`` (15 equal-mass), ``brier``, ``nll``."""
    return {
        "ece": expected_calibration_error(labels, probs),
        "ece_adaptive": expected_calibration_error(labels, probs, adaptive=True),
        "brier": brier_score(labels, probs),
        "nll": negative_log_likelihood(labels, probs),
    }


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free


def _platt_targets(y: np.ndarray) -> np.ndarray:
    """Platt's (1999) smoothed targets: ``(N+ + 1) / (N+ + 2)`` for fakes, ``1 / (N- + 2)``
    for reals. With hard 0/1 targets a validation set the model separates perfectly drives
    the fit to an infinitely sharp map (temperature -> 0), which is overconfident on any new
    image; the smoothed targets keep the map finite and shrink towards what n samples can
    support."""
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    return np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))


def _soft_nll(s: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of ``sigmoid(s)`` against soft targets ``t``, and d/ds."""
    loss = np.mean(np.logaddexp(0.0, s) - t * s)
    return float(loss), (_sigmoid(s) - t) / len(s)


def fit_calibration(
    margins: ArrayLike, labels: ArrayLike, method: str = "temperature"
) -> dict[str, Any]:
    """Fit a calibration of raw logit margins ``z`` to labels; the spec the model loads.

    ``temperature`` minimises the NLL of ``sigmoid(z / T)`` over ``T`` (bounded search on
    ``log T``); ``platt`` that of ``sigmoid(a z + b)`` (unpenalised logistic regression);
    ``isotonic`` fits scikit-learn's ``IsotonicRegression`` and keeps its knots. ``none``
    returns the identity. Both classes are needed.
    """
    z, y = (np.asarray(v) for v in (margins, labels))
    y, z = check_binary(y, z)
    if not both_classes(y):
        raise ValueError("calibration needs real and fake samples in the fitting data")
    base = {"method": method, "n": len(y), "n_fake": int(y.sum())}
    if method == "none":
        return {"method": "none"}
    targets = _platt_targets(y)
    if method == "temperature":
        from scipy.optimize import minimize_scalar

        res = minimize_scalar(
            lambda log_t: _soft_nll(z * math.exp(-log_t), targets)[0],
            bounds=(math.log(1e-2), math.log(1e3)),
            method="bounded",
            options={"xatol": 1e-6},
        )
        return {**base, "temperature": float(math.exp(res.x))}
    if method == "platt":
        from scipy.optimize import minimize

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = _soft_nll(theta[0] * z + theta[1], targets)  # grad: d loss / d s
            return value, np.array([grad @ z, grad.sum()])

        res = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        return {**base, "a": float(res.x[0]), "b": float(res.x[1])}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        reg = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(z, y)
        xs, ys = reg.X_thresholds_.astype(float), reg.y_thresholds_.astype(float)
        if len(xs) < 2:
            raise ValueError("isotonic calibration needs at least two distinct scores")
        return {**base, "x": xs.tolist(), "y": ys.tolist()}
    raise ValueError(
        f"unknown calibration method {method!r} (use temperature, platt, isotonic or none)"
    )
