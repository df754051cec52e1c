"""``mfclip evaluate``: score a manifest split with a trained model and write the full report.

Output folder::

    report.md, metrics.json, metrics.csv   per generator (each generator's fakes + all reals),
                                           operating rates, calibration before/after,
                                           abstention and (several real sources) cross-source AUC
    by_forgery_type/                       the same per forgery type
    scores.csv                             one row per image (path, group, label, score,
                                           raw_score, margin, ...)
    roc.png, pr.png                        curves overall and per generator
    reliability.png                        reliability diagram, raw and calibrated
    robustness.md, robustness.json         one row per perturbation (with --perturb)
    deepfakebench.json                     DeepfakeBench's metric definitions on the raw score,
                                           overall and per generator (with --metrics
                                           deepfakebench; also a report.md section)
    tsne.png                               fused visual features by generator (with --tsne)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import ManifestDataset
from ..data.perturbations import parse_perturbations
from ..data.transforms import build_eval_transform
from ..distributed import DistEnv
from ..errors import ManifestError
from ..fileio import atomic_write_text, json_safe
from ..loading import load_model
from ..model.mfclip import MFCLIP
from ..operating import OperatingPoint
from . import metrics
from .actionable import abstention_section, calibration_section
from .cross_source import cross_source_auc
from .deepfakebench import METRIC_DEFINITIONS, MetricDefinitions, deepfakebench_metrics
from .report import write_report
from .robustness import robustness_sweep
from .score_records import score_dataset
from .sections import definitions_markdown, robustness_markdown
from .summary import subset_masks

__all__ = ["EvalOptions", "evaluate", "score_dataset"]

log = logging.getLogger(__name__)


@dataclass
class EvalOptions:
    """What to evaluate and how."""

    split: str | None = "test"
    root: str | None = None
    batch_size: int = 64
    num_workers: int = 2
    device: str = "auto"
    bootstrap: int = 1000
    seed: int = 0
    #: Robustness sweep, e.g. ``"jpeg=50 social1080 crop=0.8"`` (see
    #: :mod:`mfclip.data.perturbations`).
    perturb: str | None = None
    tsne: bool = False
    progress: bool = True
    #: ``"deepfakebench"`` adds DeepfakeBench's own metric definitions (nearest-point EER,
    #: ``p > 0.5`` accuracy on the raw score, videos by parent folder name) beside mfclip's,
    #: so a row can be compared with a published DeepfakeBench table.
    metrics: MetricDefinitions = "mfclip"


def _video_groups(records: list[dict[str, Any]]) -> str | None:
    """``"group"`` when groups look like videos (several samples, one label each), else None.

    Groups that are identities (a person's real and fake images) would make a video-level
    score meaningless, so video metrics are skipped for them, with a note in the log.
    """
    labels: dict[str, set[int]] = {}
    for r in records:
        labels.setdefault(r["group"], set()).add(r["label"])
    mixed = [g for g, ls in labels.items() if len(ls) > 1]
    if mixed:
        log.warning(
            "video-level metrics skipped: %d group(s) hold both real and fake samples "
            "(e.g. %s), so groups are not videos here",
            len(mixed),
            ", ".join(map(str, mixed[:3])),
        )
        return None
    if len(labels) == len(records):
        return None  # one sample per group: video metrics would repeat the frame metrics
    return "group"


def _fake_subsets(records: list[dict[str, Any]], by: str) -> dict[str, Any]:
    """``{name: (labels, scores)}`` overall and per value of ``by`` (its fakes + all reals).

    With one value of ``by`` the overall set is that value's, so it is drawn once, by name.
    """
    labels = np.array([r["label"] for r in records])
    scores = np.array([r["score"] for r in records])
    masks = subset_masks(labels, [r[by] for r in records], by)
    if len(masks) == 2:
        masks.pop("all")
    return {name: (labels[mask], scores[mask]) for name, mask in masks.items()}


def _deepfakebench(
    records: list[dict[str, Any]], group_key: str | None, bootstrap: int, seed: int
) -> dict[str, dict[str, Any]]:
    """DeepfakeBench's metrics overall and per generator: the subsets of ``breakdown``.

    Computed on the raw (uncalibrated) probability, as DeepfakeBench scores its softmax
    output, with each image's path as DeepfakeBench's video source (its parent folder's name).
    """
    labels = np.array([r["label"] for r in records])
    raw = np.array([r["raw_score"] for r in records])
    paths = [r["path"] for r in records]
    groups = [r[group_key] for r in records] if group_key else None

    def _subset(mask: np.ndarray) -> dict[str, Any]:
        idx = np.flatnonzero(mask)
        return deepfakebench_metrics(
            labels[idx],
            raw[idx],
            [paths[i] for i in idx],
            bootstrap=bootstrap,
            seed=seed,
            groups=[groups[i] for i in idx] if groups is not None else None,
        )

    masks = subset_masks(labels, [r["generator"] for r in records], "generator")
    return {name: _subset(mask) for name, mask in masks.items()}


def _sections(model: MFCLIP, records: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Calibration before/after, abstention and cross-source AUC of the overall set."""
    labels = [r["label"] for r in records]
    scores = [r["score"] for r in records]
    point = OperatingPoint.from_training_info(model.training_info)
    stored = model.training_info.get("uncertain") if point.band is not None else None
    return {
        "calibration": calibration_section(
            labels, [r["raw_score"] for r in records], scores, model.calibration.method
        ),
        "abstention": abstention_section(labels, scores, threshold, stored),
        "cross_source": cross_source_auc(records, threshold),
    }


def _plot_reliability(records: list[dict[str, Any]], calibrated: bool, path: Path) -> None:
    from .plots import plot_reliability

    labels = [r["label"] for r in records]
    raw = [r["raw_score"] for r in records]
    if calibrated:
        curves = {"raw": raw, "calibrated": [r["score"] for r in records]}
        title = "Reliability: raw and calibrated"
    else:
        curves, title = {"raw = reported": raw}, "Reliability (model uncalibrated)"
    plot_reliability(labels, curves, path, title=title)


def evaluate(
    model: MFCLIP | str | Path,
    manifest: str | Path,
    out_dir: str | Path,
    options: EvalOptions | None = None,
    env: DistEnv | None = None,
) -> dict[str, Any]:
    """Score ``manifest`` (its ``options.split`` rows) and write every report file.

    Every number is computed on the calibrated ``score`` the model reports, at the threshold
    and uncertain band it stores; calibration is measured on the raw score too, and so are
    DeepfakeBench's metrics with ``options.metrics="deepfakebench"``. With a
    distributed ``env`` (``torchrun``) the ranks share the scoring and rank 0 alone computes,
    writes and returns the report (``{}`` elsewhere), the same as a one-process run's.
    """
    from .plots import plot_pr, plot_roc, plot_tsne

    opts = options or EvalOptions()
    if opts.metrics not in METRIC_DEFINITIONS:
        raise ValueError(f"metrics must be one of {METRIC_DEFINITIONS}, got {opts.metrics!r}")
    env = env or DistEnv()
    perturbations = parse_perturbations(opts.perturb or "", opts.seed)  # fail before scoring
    out = Path(out_dir)
    model = load_model(model, opts.device)
    threshold = model.threshold
    transform = build_eval_transform(model.config.preprocess)
    dataset = ManifestDataset(manifest, transform, split=opts.split, root=opts.root)
    records = score_dataset(
        model,
        dataset,
        opts.batch_size,
        opts.num_workers,
        features=opts.tsne,
        progress=opts.progress,
        env=env,
    )
    if not records:
        raise ManifestError(f"{manifest}: no sample could be scored")
    skipped = int(env.all_reduce_sum(dataset.bad_count))
    # Every scoring pass first, on all ranks; then only rank 0 works, and no rank waits on it.
    rows = None
    if perturbations:
        rows = robustness_sweep(
            model,
            manifest,
            perturbations,
            records,
            threshold,
            split=opts.split,
            root=opts.root,
            seed=opts.seed,
            batch_size=opts.batch_size,
            num_workers=opts.num_workers,
            progress=opts.progress,
            env=env,
        )
    if not env.is_main:
        return {}
    out.mkdir(parents=True, exist_ok=True)
    kw: dict[str, Any] = {
        "threshold": threshold,
        "group_key": _video_groups(records),
        "bootstrap": opts.bootstrap,
        "seed": opts.seed,
    }
    by_generator = metrics.breakdown(records, "generator", **kw)
    by_type = metrics.breakdown(records, "forgery_type", **kw)
    sections = _sections(model, records, threshold)
    plain = [{k: v for k, v in r.items() if k != "feature"} for r in records]
    name = f"{Path(manifest).name} [{opts.split or 'all'}]"
    report_sections = {**sections, "metric_definitions": opts.metrics}
    paths = write_report(out, by_generator, name, records=plain, sections=report_sections)
    dfb = None
    if opts.metrics == "deepfakebench":
        dfb = _deepfakebench(records, kw["group_key"], opts.bootstrap, opts.seed)
        text = json.dumps(json_safe(dfb), indent=2, allow_nan=False) + "\n"
        atomic_write_text(out / "deepfakebench.json", text)
    report = paths["markdown"]
    markdown = report.read_text(encoding="utf-8")
    atomic_write_text(report, markdown + "\n" + definitions_markdown(opts.metrics, dfb))
    write_report(out / "by_forgery_type", by_type, f"{name} by forgery type")
    curves = _fake_subsets(records, "generator")
    plot_roc(curves, out / "roc.png", title=f"ROC: {name}")
    plot_pr(curves, out / "pr.png", title=f"Precision-recall: {name}")
    _plot_reliability(records, sections["calibration"]["calibrated"], out / "reliability.png")
    result: dict[str, Any] = {
        "model_threshold": threshold,
        "skipped_files": skipped,
        "by_generator": by_generator,
        "by_forgery_type": by_type,
        **sections,
        "metric_definitions": opts.metrics,
    }
    if dfb is not None:
        result["deepfakebench"] = dfb
    if opts.tsne:
        feats = np.stack([r["feature"] for r in records])
        plot_tsne(feats, [r["generator"] for r in records], out / "tsne.png", seed=opts.seed)
    if rows is not None:
        result["robustness"] = rows
        atomic_write_text(out / "robustness.md", robustness_markdown(rows))
        text = json.dumps(json_safe(rows), indent=2, allow_nan=False) + "\n"
        atomic_write_text(out / "robustness.json", text)
    return result
