"""The ablation table: rows = ablations, columns = test sets, cells over seeds, vs the reference.

Each cell holds one value per seed. With one seed a cell shows the value and its bootstrap 95 %
interval over test images; with several, the mean and standard deviation over seeds, and its
95 % interval is the t-interval of that mean. A row's difference from the reference row
(``full``) is tested with Welch's t-test over seeds and marked when ``p < 0.05``, i.e. when it
exceeds what re-running the same configuration with another seed gives; with one seed nothing
is marked, because one run cannot tell a change from seed noise. The "Avg." column averages
the test sets within each seed first, as papers do.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from ..evaluate.deepfakebench import SUMMARY

__all__ = ["AVERAGE", "AblationTable", "Cell", "Comparison", "RowResult"]

AVERAGE = "Avg."
LOWER_IS_BETTER = {"eer"}
ALPHA = 0.05


@dataclass
class RowResult:
    """One (ablation, seed) run: its status and, when done, metrics per test column."""

    ablation: str
    seed: int
    status: str  # "done" or "failed"
    #: ``{column: {metric: value, metric_ci: [low, high], ...}}``
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0


@dataclass
class Cell:
    """The values of one metric in one column for one ablation, one per finished seed."""

    values: list[float]
    #: Bootstrap interval of each seed's value (``None`` where none was computed).
    cis: list[tuple[float, float] | None]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def sd(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else 0.0

    @property
    def ci(self) -> tuple[float, float] | None:
        """Bootstrap interval with one seed; t-interval of the mean over seeds otherwise."""
        if self.n == 1:
            return self.cis[0]
        if self.n == 0:
            return None
        half = stats.t.ppf(1 - ALPHA / 2, self.n - 1) * self.sd / math.sqrt(self.n)
        return (self.mean - half, self.mean + half)


@dataclass
class Comparison:
    """A row's cell against the reference row's cell."""

    delta: float
    #: Welch's t-test over seeds; ``None`` with fewer than two seeds on either side.
    p_value: float | None

    @property
    def exceeds_spread(self) -> bool | None:
        return None if self.p_value is None else self.p_value < ALPHA


def welch(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test; ``None`` below two values a side.

    Identical values within both groups give no spread to compare with: the p-value is 0 when
    the means differ and 1 when they do not.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    if np.std(a) == 0 and np.std(b) == 0:
        return 1.0 if np.mean(a) == np.mean(b) else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _ci(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and None not in value:
        return (float(value[0]), float(value[1]))
    return None


@dataclass
class AblationTable:
    """Aggregated results of an ablation study, and its Markdown, CSV and JSON forms."""

    rows: list[str]
    columns: list[str]
    metrics: tuple[str, ...]
    results: list[RowResult]
    reference: str = "full"
    definition: str = "mfclip"
    #: ``{ablation: "key=value, ..."}``: what each row changes.
    changes: dict[str, str] = field(default_factory=dict)
    #: ``{ablation: description}`` for the row legend.
    descriptions: dict[str, str] = field(default_factory=dict)
    title: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return sorted({r.seed for r in self.results})

    @property
    def failed(self) -> list[RowResult]:
        return [r for r in self.results if r.status != "done"]

    @property
    def all_columns(self) -> list[str]:
        return [*self.columns, AVERAGE] if len(self.columns) > 1 else list(self.columns)

    def cell(self, row: str, column: str, metric: str) -> Cell:
        values: list[float] = []
        cis: list[tuple[float, float] | None] = []
        for r in sorted(self.results, key=lambda r: r.seed):
            if r.ablation != row or r.status != "done":
                continue
            if column == AVERAGE:
                parts = [r.results.get(c, {}).get(metric) for c in self.columns]
                if any(p is None or not math.isfinite(p) for p in parts):
                    continue
                values.append(float(np.mean(parts)))
                cis.append(None)
                continue
            value = r.results.get(column, {}).get(metric)
            if value is None or not math.isfinite(value):
                continue
            values.append(float(value))
            cis.append(_ci(r.results[column].get(f"{metric}_ci")))
        return Cell(values, cis)

    def compare(self, row: str, column: str, metric: str) -> Comparison | None:
        """``row`` against the reference row, or ``None`` for the reference or an empty cell."""
        if row == self.reference or self.reference not in self.rows:
            return None
        mine, ref = self.cell(row, column, metric), self.cell(self.reference, column, metric)
        if not mine.n or not ref.n:
            return None
        return Comparison(mine.mean - ref.mean, welch(mine.values, ref.values))

    # ------------------------------------------------------------------ forms
    def _format(self, cell: Cell, comparison: Comparison | None) -> str:
        if not cell.n:
            return "failed"
        if cell.n == 1:
            ci = cell.ci
            text = f"{100 * cell.mean:.1f}"
            if ci is not None:
                text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
        else:
            text = f"{100 * cell.mean:.1f} ± {100 * cell.sd:.1f}"
        if comparison is not None:
            text += f" ({100 * comparison.delta:+.1f})"
            if comparison.exceeds_spread:
                text += " *"
        return text

    def to_markdown(self) -> str:
        seeds = self.seeds
        words = f" ({SUMMARY[self.definition]})" if self.definition in SUMMARY else ""
        lines = [f"# {self.title or 'Ablations'}", ""]
        lines += [*self.notes, ""] if self.notes else []
        lines += [
            f"Metric definitions: {self.definition}{words}. Seeds: {', '.join(map(str, seeds))} "
            f"({len(seeds)} per row). Reference row: `{self.reference}`; values x100, "
            f"(+/-) is the difference from the reference.",
            "",
        ]
        if len(seeds) > 1:
            lines += [
                "Cells: mean ± standard deviation over seeds. `*`: the difference from the "
                "reference exceeds the seed-to-seed spread (Welch's t-test over seeds, "
                "p < 0.05). 95 % intervals of the means are in ablations.csv / ablations.json.",
                "",
            ]
        else:
            lines += [
                "Cells: value [bootstrap 95 % interval over test images]. One seed cannot "
                "separate a change from seed noise, so no difference is marked: run with "
                "`--seeds 3`.",
                "",
            ]
        header = ["Ablation", *self.all_columns]
        for metric in self.metrics:
            arrow = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
            lines += [f"## {metric.upper()} ({arrow})", ""]
            lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(self.all_columns)]
            for row in self.rows:
                cells = [
                    self._format(self.cell(row, c, metric), self.compare(row, c, metric))
                    for c in self.all_columns
                ]
                lines.append(f"| {row} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += ["## Rows", ""]
        for row in self.rows:
            described = f": {self.descriptions[row]}" if self.descriptions.get(row) else ""
            lines.append(f"- `{row}`{described} (`{self.changes.get(row, '')}`)")
        lines.append("")
        if self.failed:
            lines += ["## Failed runs", ""]
            for r in self.failed:
                first = r.error.splitlines()[0] if r.error else "failed"
                lines.append(f"- `{r.ablation}` seed {r.seed}: {first}")
            lines.append("")
        return "\n".join(lines)

    def plot(self, path: Any, metric: str = "auc") -> Any:
        """One panel per test column: each row's value and interval, the reference as a line.

        Intervals are the bootstrap interval (one seed) or mean ± sd (seeds); filled dots
        differ from the reference by more than the seed spread.
        """
        from ..evaluate.plots import plot_intervals

        panels, reference = {}, {}
        for column in self.all_columns:
            rows = []
            for row in self.rows:
                cell, comparison = self.cell(row, column, metric), self.compare(row, column, metric)
                low, high = (cell.mean - cell.sd, cell.mean + cell.sd)
                if cell.n == 1 and cell.ci is not None:
                    low, high = cell.ci
                marked = row == self.reference or bool(comparison and comparison.exceeds_spread)
                rows.append((row, 100 * cell.mean, 100 * low, 100 * high, marked))
            panels[column] = rows
            reference[column] = 100 * self.cell(self.reference, column, metric).mean
        what = "bootstrap 95% CI" if len(self.seeds) == 1 else "mean ± sd over seeds"
        return plot_intervals(
            panels,
            path,
            xlabel=f"{metric.upper()} x100 ({what})",
            reference=reference,
            title=self.title,
        )

    def records(self) -> list[dict[str, Any]]:
        """One flat record per (ablation, column, metric): the CSV rows and the JSON cells."""
        out = []
        for row in self.rows:
            for column in self.all_columns:
                for metric in self.metrics:
                    cell = self.cell(row, column, metric)
                    comparison = self.compare(row, column, metric)
                    ci = cell.ci
                    out.append(
                        {
                            "ablation": row,
                            "column": column,
                            "metric": metric,
                            "n_seeds": cell.n,
                            "mean": cell.mean if cell.n else None,
                            "sd": cell.sd if cell.n else None,
                            "ci_low": ci[0] if ci else None,
                            "ci_high": ci[1] if ci else None,
                            "delta": comparison.delta if comparison else None,
                            "p_value": comparison.p_value if comparison else None,
                            "exceeds_spread": comparison.exceeds_spread if comparison else None,
                            "values": cell.values,
                        }
                    )
        return out

    def to_csv(self) -> str:
        buffer = io.StringIO()
        records = self.records()
        writer = csv.DictWriter(buffer, fieldnames=list(records[0]) if records else ["ablation"])
        writer.writeheader()
        for record in records:
            writer.writerow({**record, "values": " ".join(f"{v:.6f}" for v in record["values"])})
        return buffer.getvalue()

    def to_json(self) -> str:
        payload = {
            "title": self.title,
            "metric_definitions": self.definition,
            "reference": self.reference,
            "seeds": self.seeds,
            "rows": self.rows,
            "columns": self.all_columns,
            "metrics": list(self.metrics),
            "changes": self.changes,
            "descriptions": self.descriptions,
            "cells": self.records(),
            "runs": [
                {
                    "ablation": r.ablation,
                    "seed": r.seed,
                    "status": r.status,
                    "error": r.error,
                    "seconds": r.seconds,
                    "results": r.results,
                }
                for r in self.results
            ],
        }
        return json.dumps(_strict(payload), indent=2, allow_nan=False) + "\n"


def _strict(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
