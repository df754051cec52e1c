"""Markdown for the report sections a user acts on: operating rates, calibration, abstention,
cross-source AUC, robustness and which metric definitions a report used.

Kept apart from :mod:`~mfclip.evaluate.report` (files and the main metric table) so each
section's wording, which says what every number means, is in one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .deepfakebench import DEFINITION, SUMMARY, MetricDefinitions
from .summary import TARGET_FPRS, TARGET_TPRS

__all__ = [
    "abstention_markdown",
    "calibration_markdown",
    "cross_source_markdown",
    "definitions_markdown",
    "operating_markdown",
    "robustness_markdown",
    "sections_markdown",
]


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{float(value):.{digits}f}"


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{100 * float(value):.2f}%"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def operating_markdown(subsets: Mapping[str, Mapping[str, Any]]) -> str:
    """Rates per subset at the stored threshold and at fixed false / true positive rates."""
    has_thr = any("fpr@thr" in res for res in subsets.values())
    header = ["Subset", *(["FPR@thr", "TPR@thr"] if has_thr else [])]
    header += [f"TPR@FPR={100 * f:g}%" for f in TARGET_FPRS]
    header += [f"FPR@TPR={100 * t:g}%" for t in TARGET_TPRS]
    header.append("N real")
    rows = []
    for name, res in subsets.items():
        cells = [str(name)]
        if has_thr:
            cells += [_pct(res.get("fpr@thr")), _pct(res.get("tpr@thr"))]
        cells += [_pct(res.get(f"tpr@fpr={f:g}")) for f in TARGET_FPRS]
        cells += [_pct(res.get(f"fpr@tpr={t:g}")) for t in TARGET_TPRS]
        cells.append(str(res.get("n_real", "-")))
        rows.append(cells)
    return "\n".join(
        [
            "## Operating points",
            "",
            *_table(header, rows),
            "",
            "FPR@thr: share of real images flagged as fake at the model's stored threshold; "
            "TPR@thr: share of fakes caught there.",
            "TPR@FPR=X: share of fakes caught at the lowest threshold that flags at most X of "
            "the real images (at most floor(X * N real) of them, so with fewer than 1/X reals "
            "none may be flagged); FPR@TPR=X: share of reals flagged when X of the fakes must "
            "be caught. Both thresholds are chosen on this set, so they are best cases.",
            "",
        ]
    )


def calibration_markdown(section: Mapping[str, Any]) -> str:
    """ECE / adaptive ECE / Brier / NLL before and after the model's calibration."""
    keys = (
        ("ECE (15 bins)", "ece"),
        ("Adaptive ECE", "ece_adaptive"),
        ("Brier", "brier"),
        ("NLL", "nll"),
    )
    rows = [
        [title, _num(section["before"][k], 4), _num(section["after"][k], 4)] for title, k in keys
    ]
    if section["calibrated"]:
        note = (
            f"The model's stored calibration ({section['method']}) maps the raw softmax to the "
            "probability every command reports; it was fitted on validation data."
        )
    else:
        note = (
            "The model is uncalibrated: it reports the raw softmax, so after equals before. "
            "Fit a calibration on validation data (`mfclip calibrate`) before reading the "
            "probabilities as frequencies."
        )
    return "\n".join(
        [
            "## Calibration",
            "",
            *_table(["Metric", "Before (raw)", "After (calibrated)"], rows),
            "",
            note,
            "ECE: mean |share of fakes - mean p(fake)| over 15 equal-width bins of p(fake), "
            "weighted by bin size; adaptive ECE uses 15 equal-mass bins. Brier: mean squared "
            "error of p(fake); NLL: mean -log p(true class). Lower is better; the reliability "
            "diagram is reliability.png.",
            "",
        ]
    )


def abstention_markdown(section: Mapping[str, Any]) -> str:
    """Coverage against accuracy as the uncertain band widens, and the stored band here."""
    thr = section["threshold"]
    rows = [[_num(r["band"]), _pct(r["coverage"]), _pct(r["accuracy"])] for r in section["curve"]]
    lines = [
        "## Abstention",
        "",
        f"Accuracy at the stored threshold {thr:.4g} without abstaining: "
        f"{_pct(section['accuracy'])}. Calling the images with |p - threshold| < d "
        "uncertain keeps this share of the set (coverage) at this accuracy:",
        "",
        *_table(["d", "Coverage", "Accuracy"], rows),
        "",
    ]
    band = section.get("band")
    if band is None:
        lines.append("The model has no stored uncertain band.")
    else:
        lines += [
            f"Stored uncertain band {band['lo']:.4g} < p < {band['hi']:.4g} on this set: "
            f"coverage {_pct(band['coverage'])}, accuracy {_pct(band['accuracy'])} "
            f"({band['n_uncertain']} uncertain: {band['uncertain_real']} real, "
            f"{band['uncertain_fake']} fake)."
        ]
        fitted = band.get("fitted")
        if fitted:
            lines.append(
                f"On its fitting data it was chosen for accuracy "
                f"{_pct(fitted.get('target_accuracy'))} and had coverage "
                f"{_pct(fitted.get('coverage'))}, accuracy {_pct(fitted.get('accuracy'))}."
            )
    return "\n".join([*lines, ""])


def cross_source_markdown(section: Mapping[str, Any]) -> str:
    """Rows: real sources; columns: all fakes, then each generator."""
    generators = list(section["generators"])
    with_fpr = any("fpr@thr" in r for r in section["by_source"].values())
    header = ["Real source", "N real", "AUC vs all fakes", *(["FPR@thr"] if with_fpr else [])]
    header += [f"AUC vs {g} ({n})" for g, n in section["generators"].items()]
    rows = []
    for name, res in section["by_source"].items():
        cells = [str(name), str(res["n_real"]), _num(res["auc"])]
        if with_fpr:
            cells.append(_pct(res.get("fpr@thr")))
        cells += [_num(section["pairs"][name][g]) for g in generators]
        rows.append(cells)
    return "\n".join(
        ["## Cross-source AUC", "", *_table(header, rows), "", section["definition"], ""]
    )


def _with_ci(res: Mapping[str, Any], key: str) -> str:
    text = _num(res.get(key), 4)
    ci = res.get(f"{key}_ci")
    if text != "-" and ci is not None and all(_num(c) != "-" for c in ci):
        text += f" [{_num(ci[0], 4)}, {_num(ci[1], 4)}]"
    return text


def definitions_markdown(
    definitions: MetricDefinitions, deepfakebench: Mapping[str, Mapping[str, Any]] | None = None
) -> str:
    """Which metric definitions the report used, and DeepfakeBench's metrics per subset if given.

    The line is there because the same model gets a different EER and accuracy under
    DeepfakeBench's definitions, so a reader comparing with a paper must know which it was.
    """
    line = f"Metric definitions: {definitions} ({SUMMARY[definitions]})"
    if deepfakebench is None:
        return line + "\n"
    keys = ("auc", "eer", "ap", "acc", "video_auc")
    rows: list[list[str]] = []
    for name, res in deepfakebench.items():
        cells = [str(name), *(_with_ci(res, k) for k in keys), str(res.get("n_videos", "-"))]
        cells.append(f"{res.get('n', '-')} ({res.get('n_real', '-')}/{res.get('n_fake', '-')})")
        rows.append(cells)
    titles = ("AUC", "EER", "AP", "ACC", "Video AUC")
    header = ["Subset", *titles, "Videos", "N (real/fake)"]
    notes = [f"- {title}: {DEFINITION[k]}." for title, k in zip(titles, keys, strict=True)]
    notes.append("- Per-subset rows pair that subset's fakes with all real samples.")
    if any("auc_ci" in res for res in deepfakebench.values()):
        notes.append(
            "- Brackets: 95% percentile-bootstrap interval, stratified by label, whole manifest "
            "groups resampled when they are videos (mfclip's addition; DeepfakeBench reports "
            "none)."
        )
    return "\n".join(
        [
            "## DeepfakeBench metrics",
            "",
            f"{line}. The tables above use mfclip's own ({SUMMARY['mfclip']}); this one is "
            "computed as DeepfakeBench's `get_test_metrics` computes it, to sit beside its "
            "published tables (also in deepfakebench.json).",
            "",
            *_table(header, rows),
            "",
            *notes,
            "",
        ]
    )


def robustness_markdown(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per perturbation setting (``robustness.md``)."""
    keys = ("auc", "ap", "eer")
    table = []
    for name, s in rows.items():
        cells = [str(name), str(s.get("perturbation", "")), *(_num(s.get(k)) for k in keys)]
        cells += [_pct(s.get("fpr@thr")), _pct(s.get("tpr@thr")), _num(s.get("acc@thr"))]
        cells.append(str(s.get("n", 0)))
        table.append(cells)
    header = ["Setting", "What", "AUC", "AP", "EER", "FPR@thr", "TPR@thr", "ACC@thr", "N"]
    thr = next((s["threshold"] for s in rows.values() if s.get("threshold") is not None), None)
    at = f" {thr:.4g}" if thr is not None else ""
    return "\n".join(
        [
            "# Robustness",
            "",
            *_table(header, table),
            "",
            "Every perturbation is applied to real and fake images alike.",
            f"FPR@thr: share of real images flagged as fake at the model's stored threshold{at}"
            " (how many genuine photos get flagged after this processing); TPR@thr: share of "
            "fakes still caught.",
            "",
        ]
    )


def sections_markdown(sections: Mapping[str, Any]) -> str:
    """The optional report sections present in ``sections``, in a fixed order."""
    render = {
        "calibration": calibration_markdown,
        "abstention": abstention_markdown,
        "cross_source": cross_source_markdown,
    }
    return "\n".join(render[k](sections[k]) for k in render if sections.get(k))
