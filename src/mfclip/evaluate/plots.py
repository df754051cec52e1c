"""Headless figures: ROC and PR curves, reliability diagrams, and t-SNE maps of features.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas, never ``pyplot``:
no global figure registry (nothing to leak or close in long runs), no display needed on a
server, and no interference with a user's interactive backend. Files are saved atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from mfclip.evaluate.calibration import DEFAULT_BINS, expected_calibration_error
from mfclip.evaluate.metrics import average_precision, pr_curve, roc_auc, roc_curve
from mfclip.evaluate.validation import check_binary
from mfclip.fileio import atomic_write

__all__ = ["Interval", "plot_intervals", "plot_pr", "plot_reliability", "plot_roc", "plot_tsne"]

Curves = Mapping[str, tuple[ArrayLike, ArrayLike]]
#: ``(label, value, low, high, highlighted)``: one row of :func:`plot_intervals`.
Interval = tuple[str, float, float, float, bool]
_EXACT_TSNE_MAX = 200


def _new_figure(size: tuple[float, float] = (5.0, 5.0)) -> Figure:
    fig = Figure(figsize=size, dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Save atomically (temporary file, then rename) with the umask's permissions."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fmt = out.suffix.lstrip(".").lower() or "png"
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, format=fmt, bbox_inches="tight"))
    finally:
        fig.clear()
    return out


def plot_roc(curves: Curves, path: str | os.PathLike[str], title: str = "ROC") -> Path:
    """One ROC curve per named ``(labels, scores)`` set, AUC in the legend; returns the path."""
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1)
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=True)
        ax.plot(fpr, tpr, linewidth=1.5, label=f"{name} (AUC={roc_auc(labels, scores):.3f})")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="False positive rate (reals flagged)",
        ylabel="True positive rate (fakes caught)",
        title=title,
    )
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def plot_pr(curves: Curves, path: str | os.PathLike[str], title: str = "Precision-recall") -> Path:
    """One precision-recall curve (fake = positive) per named set, AP in the legend."""
    fig = _new_figure()
    ax = fig.add_subplot()
    for name, (labels, scores) in curves.items():
        precision, recall, _ = pr_curve(labels, scores)
        ap = average_precision(labels, scores)
        ax.plot(
            recall, precision, drawstyle="steps-post", linewidth=1.5, label=f"{name} (AP={ap:.3f})"
        )
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="Recall", ylabel="Precision", title=title)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(loc="lower left", fontsize="small")
    return _save(fig, path)


def plot_reliability(
    labels: ArrayLike,
    probs: Mapping[str, ArrayLike],
    path: str | os.PathLike[str],
    bins: int = DEFAULT_BINS,
    title: str = "Reliability",
) -> Path:
    """Reliability diagram: per equal-width bin, mean p(fake) against the share of fakes.

    One curve per named set of probabilities (raw, calibrated), ECE in the legend, the
    diagonal of perfect calibration, and below it the number of images per bin, so that a
    wild point can be seen to rest on a handful of images.
    """
    fig = _new_figure((5.0, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="perfect")
    edges = np.linspace(0.0, 1.0, bins + 1)
    width = 1.0 / bins / max(1, len(probs))
    for k, (name, p) in enumerate(probs.items()):
        y, s = check_binary(labels, p)
        index = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
        counts = np.bincount(index, minlength=bins)
        full = counts > 0
        conf = np.bincount(index, weights=s, minlength=bins)[full] / counts[full]
        freq = np.bincount(index, weights=y, minlength=bins)[full] / counts[full]
        ece = expected_calibration_error(y, s, bins)
        top.plot(conf, freq, marker="o", linewidth=1.5, label=f"{name} (ECE={ece:.3f})")
        bottom.bar(edges[:-1] + k * width, counts, width=width, align="edge", label=name)
    top.set(xlim=(0, 1), ylim=(0, 1.01), ylabel="Share of fakes in the bin", title=title)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize="small")
    bottom.set(xlabel="Predicted p(fake)", ylabel="Images per bin")
    bottom.grid(alpha=0.3)
    return _save(fig, path)


def plot_tsne(
    features: ArrayLike,
    labels: Sequence[str],
    path: str | os.PathLike[str],
    seed: int = 0,
    perplexity: float = 30.0,
    title: str = "t-SNE",
) -> Path:
    """2-D t-SNE of ``features`` (N, D), one colour per distinct ``labels`` entry.

    Needs scikit-learn (an optional dependency); perplexity is capped below N/3 so small
    sets still work. Exact t-SNE up to 200 points, Barnes-Hut above. Deterministic per ``seed``.
    """
    try:
        from sklearn.manifold import TSNE
    except ImportError as exc:
        raise ImportError("plot_tsne needs scikit-learn: run `pip install scikit-learn`") from exc
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (N, D), got shape {x.shape}")
    names = [str(v) for v in labels]
    if len(names) != x.shape[0]:
        raise ValueError(f"{len(names)} labels for {x.shape[0]} feature rows")
    if x.shape[0] < 4:
        raise ValueError(f"t-SNE needs at least 4 samples, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")
    perp = float(min(perplexity, max(1.0, (x.shape[0] - 1) / 3.0)))
    # Exact gradients are cheap for small N and avoid Barnes-Hut's OpenMP code, which can
    # stall for tens of seconds on a busy machine; large N needs Barnes-Hut's O(N log N).
    method = "exact" if x.shape[0] <= _EXACT_TSNE_MAX else "barnes_hut"
    emb = TSNE(
        n_components=2,
        perplexity=perp,
        init="pca",
        learning_rate="auto",
        random_state=seed,
        method=method,
    ).fit_transform(x)

    fig = _new_figure((6.0, 5.0))
    ax = fig.add_subplot()
    classes = list(dict.fromkeys(names))
    palette = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    arr = np.array(names, dtype=object)
    for i, cls in enumerate(classes):
        pts = emb[arr == cls]
        ax.scatter(pts[:, 0], pts[:, 1], s=8, alpha=0.8, color=palette(i % palette.N), label=cls)
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(loc="best", fontsize="small", markerscale=2)
    return _save(fig, path)


def plot_intervals(
    panels: Mapping[str, Sequence[Interval]],
    path: str | os.PathLike[str],
    *,
    xlabel: str,
    reference: Mapping[str, float] | None = None,
    title: str = "",
) -> Path:
    """Dot-and-interval rows, one panel per key (an ablation table as a figure).

    Highlighted rows are drawn filled, the others hollow; ``reference`` draws a vertical line
    per panel (the reference row's value) so differences read at a glance.
    """
    names = list(panels)
    height = max(2.5, 0.32 * max((len(v) for v in panels.values()), default=1) + 1.2)
    fig = _new_figure((3.6 * max(len(names), 1) + 1.4, height))
    axes = fig.subplots(1, max(len(names), 1), sharey=True, squeeze=False)[0]
    for ax, name in zip(axes, names, strict=False):
        rows = list(panels[name])
        ys = np.arange(len(rows))[::-1]
        for y, (_, value, low, high, highlighted) in zip(ys, rows, strict=True):
            if not np.isfinite(value):
                continue
            ax.plot([low, high], [y, y], color="C0", linewidth=1.5)
            face = "C0" if highlighted else "white"
            ax.plot([value], [y], "o", color="C0", markerfacecolor=face, markersize=5)
        if reference and name in reference and np.isfinite(reference[name]):
            ax.axvline(reference[name], color="0.5", linestyle="--", linewidth=1)
        ax.set_yticks(ys, [r[0] for r in rows])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10, y=1.02)
    return _save(fig, path)
