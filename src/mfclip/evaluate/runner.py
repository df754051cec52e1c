"""``mfclip evaluate``: score a manifest split with a trained model and write the full report.

Output folder::

    report.md, metrics.json, metrics.csv   per generator (each generator's fakes + all reals)
    by_forgery_type/                       the same per forgery type
    scores.csv                             one row per image (path, group, label, score, ...)
    roc.png, pr.png                        curves overall and per generator
    robustness.md, robustness.json         one row per perturbation (with --perturb)
    tsne.png                               fused visual features by generator (with --tsne)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from ..data.dataset import ManifestDataset, collate
from ..data.perturbations import PerturbedTransform, parse_perturbations
from ..data.transforms import build_eval_transform
from ..inference.scoring import Scorer
from ..loading import load_model
from ..model.mfclip import MFCLIP
from . import metrics
from .report import write_report

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
    perturb: str | None = None
    tsne: bool = False
    progress: bool = True


def score_dataset(
    model: MFCLIP,
    dataset: ManifestDataset,
    batch_size: int = 64,
    num_workers: int = 2,
    features: bool = False,
    progress: bool = True,
    desc: str = "scoring",
) -> list[dict[str, Any]]:
    """One record per readable sample: path, group, label, score, generator, forgery_type.

    Unreadable files are skipped (and counted in ``dataset.bad_count``), never fatal.
    """
    from tqdm.auto import tqdm

    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    scorer = Scorer(model, features=features)
    batches = tqdm(loader, desc=desc, disable=not progress, unit="batch", leave=False)
    records: list[dict[str, Any]] = []
    for batch, scores in scorer.batches(batches):
        probs = scores.fake_prob.numpy()
        feats = scores.features.numpy() if scores.features is not None else None
        for i, path in enumerate(batch["path"]):
            row = {
                "path": path,
                "group": batch["group"][i],
                "label": int(batch["label"][i]),
                "score": float(probs[i]),
                "generator": batch["generator"][i] or "real",
                "forgery_type": batch["forgery_type"][i] or "real",
            }
            if feats is not None:
                row["feature"] = feats[i]
            records.append(row)
    return records


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
    """``{name: (labels, scores)}`` overall and per value of ``by`` (its fakes + all reals)."""
    labels = np.array([r["label"] for r in records])
    scores = np.array([r["score"] for r in records])
    curves: dict[str, Any] = {"all": (labels, scores)}
    values = sorted({r[by] for r in records if r["label"] == 1})
    if len(values) == 1:
        return {values[0]: curves.pop("all")}
    for value in values:
        mask = np.array([r["label"] == 0 or r[by] == value for r in records])
        curves[value] = (labels[mask], scores[mask])
    return curves


def _robustness_markdown(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| perturbation | AUC | AP | EER | ACC@thr | N |", "|---|---|---|---|---|---|"]
    for name, s in rows.items():
        cells = [s.get(k) for k in ("auc", "ap", "eer", "acc@thr")]
        text = " | ".join("-" if v is None or not np.isfinite(v) else f"{v:.4f}" for v in cells)
        lines.append(f"| {name} | {text} | {s.get('n', 0)} |")
    return "\n".join(lines) + "\n"


def evaluate(
    model: MFCLIP | str | Path,
    manifest: str | Path,
    out_dir: str | Path,
    options: EvalOptions | None = None,
) -> dict[str, Any]:
    """Score ``manifest`` (its ``options.split`` rows) and write every report file."""
    from .plots import plot_pr, plot_roc, plot_tsne

    opts = options or EvalOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
    )
    if not records:
        raise ValueError(f"{manifest}: no sample could be scored")
    kw: dict[str, Any] = {
        "threshold": threshold,
        "group_key": _video_groups(records),
        "bootstrap": opts.bootstrap,
        "seed": opts.seed,
    }
    by_generator = metrics.breakdown(records, "generator", **kw)
    by_type = metrics.breakdown(records, "forgery_type", **kw)
    plain = [{k: v for k, v in r.items() if k != "feature"} for r in records]
    name = f"{Path(manifest).name} [{opts.split or 'all'}]"
    write_report(out, by_generator, name, records=plain)
    write_report(out / "by_forgery_type", by_type, f"{name} by forgery type")
    curves = _fake_subsets(records, "generator")
    plot_roc(curves, out / "roc.png", title=f"ROC: {name}")
    plot_pr(curves, out / "pr.png", title=f"Precision-recall: {name}")
    result: dict[str, Any] = {
        "model_threshold": threshold,
        "skipped_files": dataset.bad_count,
        "by_generator": by_generator,
        "by_forgery_type": by_type,
    }
    if opts.tsne:
        feats = np.stack([r["feature"] for r in records])
        plot_tsne(feats, [r["generator"] for r in records], out / "tsne.png", seed=opts.seed)
    if opts.perturb:
        result["robustness"] = _robustness(model, manifest, opts, threshold)
        (out / "robustness.md").write_text(_robustness_markdown(result["robustness"]))
        (out / "robustness.json").write_text(
            json.dumps(_finite(result["robustness"]), indent=2, allow_nan=False) + "\n"
        )
    return result


def _robustness(
    model: MFCLIP, manifest: str | Path, opts: EvalOptions, threshold: float
) -> dict[str, dict[str, Any]]:
    """Overall metrics on clean and on each perturbed copy of the split (seeded)."""
    base = build_eval_transform(model.config.preprocess)
    rows: dict[str, dict[str, Any]] = {}
    settings: Sequence[Any] = [None, *parse_perturbations(opts.perturb or "", opts.seed)]
    for pert in settings:
        transform = base if pert is None else PerturbedTransform(pert, base)
        label = "clean" if pert is None else pert.label
        dataset = ManifestDataset(
            manifest, transform, split=opts.split, root=opts.root, seed=opts.seed
        )
        recs = score_dataset(
            model, dataset, opts.batch_size, opts.num_workers, progress=opts.progress, desc=label
        )
        rows[label] = metrics.summarize(
            [r["label"] for r in recs],
            [r["score"] for r in recs],
            threshold=threshold,
            bootstrap=0,
        )
    return rows


def _finite(obj: Any) -> Any:
    """NaN -> None so the JSON is strict."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
