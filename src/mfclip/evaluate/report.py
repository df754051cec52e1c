"""Evaluation reports on disk: metrics.json, metrics.csv, report.md and optional scores.csv.

Every file is written atomically (temporary file in the same directory, then ``os.replace``)
so an interrupted or concurrent run never leaves a half-written report that a later script
could silently parse. Per-sample scores are saved too, because re-computing any metric from
``scores.csv`` is the cheapest way to let others check a published number.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mfclip.evaluate.grouping import to_columns
from mfclip.evaluate.sections import operating_markdown, sections_markdown
from mfclip.fileio import atomic_write_text, json_safe

__all__ = ["format_metric", "protocol_table", "write_report"]

# (column title, result key) for the Markdown table, in display order.
_TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("AUC", "auc"),
    ("AP", "ap"),
    ("EER", "eer"),
    ("ACC@0.5", "acc@0.5"),
    ("ACC@thr", "acc@thr"),
    ("Video AUC", "video_auc"),
)
_SCORE_COLUMNS = ("path", "group", "label", "score")


def _is_summary(results: Mapping[str, Any]) -> bool:
    """True for a single ``summarize()`` dict (as opposed to subset name -> summary)."""
    return "auc" in results and not isinstance(results["auc"], Mapping)


def format_metric(value: Any, ci: Sequence[Any] | None = None) -> str:
    """``0.912 [0.89, 0.93]``: value to 3 decimals, CI to 2; ``-`` when absent."""
    if value is None:
        return "-"
    text = "nan" if isinstance(value, float) and math.isnan(value) else f"{value:.3f}"
    if ci is not None and len(ci) == 2 and all(c is not None for c in ci):
        lo, hi = (float(c) for c in ci)
        if not (math.isnan(lo) or math.isnan(hi)):
            text += f" [{lo:.2f}, {hi:.2f}]"
    return text


def _markdown(name: str, subsets: Mapping[str, Mapping[str, Any]]) -> str:
    header = ["Subset", *(title for title, _ in _TABLE_COLUMNS), "N (real/fake)"]
    lines = [
        f"# {name}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|",
    ]
    thresholds: set[float] = set()
    for subset, res in subsets.items():
        cells = [str(subset)]
        for _, key in _TABLE_COLUMNS:
            cells.append(format_metric(res.get(key), res.get(f"{key}_ci")))
        cells.append(f"{res.get('n', '-')} ({res.get('n_real', '-')}/{res.get('n_fake', '-')})")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        if res.get("threshold") is not None:
            thresholds.add(float(res["threshold"]))
    lines += [
        "",
        "Brackets: 95% percentile-bootstrap confidence interval, stratified by label "
        "(whole videos resampled when video ids are known).",
        "Per-subset rows pair that subset's fakes with all real samples.",
        "ACC@0.5 flags `score >= 0.5` as fake; EER is interpolated where FPR = FNR.",
    ]
    if thresholds:
        shown = ", ".join(f"{t:.4g}" for t in sorted(thresholds))
        lines.append(f"ACC@thr uses threshold {shown}, fixed beforehand on validation data.")
    return "\n".join(lines) + "\n"


def _csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _metrics_csv(subsets: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per subset; ``<key>_ci`` pairs are split into ``_lo``/``_hi`` columns."""
    keys: dict[str, None] = {}
    for res in subsets.values():
        for k, v in res.items():
            if isinstance(v, (list, tuple)) and len(v) == 2:
                keys.update({f"{k}_lo": None, f"{k}_hi": None})
            else:
                keys[k] = None
    rows = []
    for subset, res in subsets.items():
        flat: dict[str, Any] = {}
        for k, v in res.items():
            if isinstance(v, (list, tuple)) and len(v) == 2:
                flat[f"{k}_lo"], flat[f"{k}_hi"] = v
            else:
                flat[k] = v
        cells = [subset]
        for k in keys:
            v = flat.get(k)
            cells.append("" if v is None else repr(v) if isinstance(v, float) else v)
        rows.append(cells)
    return _csv_text(["subset", *keys], rows)


def _scores_csv(records: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]]) -> str:
    cols = to_columns(records)
    order = [c for c in _SCORE_COLUMNS if c in cols] + [c for c in cols if c not in _SCORE_COLUMNS]
    n = len(next(iter(cols.values()))) if cols else 0
    rows = (["" if cols[c][i] is None else json_safe(cols[c][i]) for c in order] for i in range(n))
    return _csv_text(order, rows)


def write_report(
    out_dir: str | os.PathLike[str],
    results: Mapping[str, Any],
    name: str,
    records: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]] | None = None,
    sections: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``metrics.json``, ``metrics.csv``, ``report.md`` (+ ``scores.csv``) to ``out_dir``.

    ``results`` maps subset name -> :func:`~mfclip.evaluate.metrics.summarize` dict (as from
    ``breakdown``); a single summary dict is also accepted and reported as one row named
    ``name``. ``records`` are the per-sample rows (path, group, label, score, generator, ...).
    ``sections`` holds the overall-set sections (``calibration``, ``abstention``,
    ``cross_source``; see :mod:`~mfclip.evaluate.sections`): top-level keys in the JSON and
    sections of ``report.md``. In JSON, NaN becomes ``null`` so the file is strict JSON.
    Returns the written paths by kind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    subsets: dict[str, Mapping[str, Any]] = (
        {name: results} if _is_summary(results) else {str(k): v for k, v in results.items()}
    )
    paths = {
        "json": out / "metrics.json",
        "csv": out / "metrics.csv",
        "markdown": out / "report.md",
    }
    extra = {k: v for k, v in (sections or {}).items() if v is not None}
    payload = {"name": name, "subsets": json_safe(subsets), **json_safe(extra)}
    markdown = _markdown(name, subsets)
    if any("tpr@fpr=0.01" in res for res in subsets.values()):
        markdown += "\n" + operating_markdown(subsets)
    if extra:
        markdown += "\n" + sections_markdown(extra)
    atomic_write_text(paths["json"], json.dumps(payload, indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["csv"], _metrics_csv(subsets))
    atomic_write_text(paths["markdown"], markdown)
    if records is not None:
        paths["scores"] = out / "scores.csv"
        atomic_write_text(paths["scores"], _scores_csv(records))
    return paths


def protocol_table(
    rows: Mapping[str, Mapping[str, float]],
    metric: str = "auc",
    *,
    scale: float = 100.0,
    digits: int = 2,
    bold_best: bool = False,
) -> str:
    """Cross-protocol Markdown table in the paper's style: train sets x test sets + average.

    Values are multiplied by ``scale`` (AUC in %, as papers print it). Test columns appear in
    first-seen order; missing or NaN cells show ``-`` and are left out of the row average.
    With ``bold_best`` the best value per column is bold (lowest for EER, highest otherwise).
    """
    tests: dict[str, None] = {}
    for row in rows.values():
        tests.update(dict.fromkeys(row))
    columns = [*tests, "Avg."]

    def _value(row: Mapping[str, float], test: str) -> float:
        v = row.get(test)
        return math.nan if v is None else float(v) * scale

    table: dict[str, list[float]] = {}
    for train, row in rows.items():
        values = [_value(row, t) for t in tests]
        finite = [v for v in values if not math.isnan(v)]
        table[train] = [*values, sum(finite) / len(finite) if finite else math.nan]

    lower_better = metric.lower() in {"eer", "fpr", "fnr", "hter", "error", "loss"}
    best: list[float] = []
    for j in range(len(columns)):
        col = [v[j] for v in table.values() if not math.isnan(v[j])]
        # A lone value in a column is not "best" of anything: only bold real comparisons.
        best.append((min(col) if lower_better else max(col)) if len(col) > 1 else math.nan)

    lines = [
        "| " + " | ".join([f"Train \\ Test ({metric.upper()})", *columns]) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(columns)) + "|",
    ]
    for train, values in table.items():
        cells = []
        for j, v in enumerate(values):
            cell = "-" if math.isnan(v) else f"{v:.{digits}f}"
            if bold_best and v == best[j]:
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append("| " + " | ".join([train, *cells]) + " |")
    return "\n".join(lines) + "\n"
