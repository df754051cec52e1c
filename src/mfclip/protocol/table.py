"""The ablation table: rows = ablations, columns = test sets, cells over seeds, vs the reference.

Each cell holds one value per seed. With one seed a cell shows the value and its bootstrap 95 %
interval over test images; with several, the mean and standard deviation over seeds and the
95 % t-interval of that mean. A row's difference from the reference row (``full``) is tested
over the seeds both rows finished, paired by seed (a seed fixes the initialisation and data
order of both): a paired t-test on the per-seed differences, marked ``*`` when ``p < 0.05``,
i.e. when the difference exceeds what the seed-to-seed spread of the differences explains,
and ``**`` when it still holds after Holm's correction over every cell of the metric's
table. With one seed nothing is marked: one run cannot tell a change from seed noise. The
"Avg." column averages the test sets within each seed first, as papers do.
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
from ..fileio import json_safe

__all__ = ["AVERAGE", "AblationTable", "Cell", "Comparison", "RowResult", "holm", "paired_p"]

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
    #: The seed of each value.
    seeds: list[int] = field(default_factory=list)

    def by_seed(self) -> dict[int, float]:
        return dict(zip(self.seeds, self.values, strict=True))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def sd(self) -> float:
        """Standard deviation over seeds (``nan`` below two seeds)."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else math.nan

    @property
    def ci(self) -> tuple[float, float] | None:
        """Bootstrap interval with one seed; t-interval of the mean over seeds otherwise."""
        if self.n == 1:
            return self.cis[0]
        if self.n == 0:
            return None
        half = stats.t.ppf(1 - ALPHA / 2, self.n - 1) * self.sd / math.sqrt(self.n)
        # Every metric of the table is a rate: the interval stays inside [0, 1].
        return (max(0.0, self.mean - half), min(1.0, self.mean + half))


@dataclass
class Comparison:
    """A row's cell against the reference row's cell, over the seeds both finished."""

    delta: float
    #: Paired t-test over the shared seeds; ``None`` with fewer than two.
    p_value: float | None
    #: The seeds the test paired.
    seeds: list[int] = field(default_factory=list)
    #: ``p_value`` after Holm's correction over the table's cells (set by the table).
    p_holm: float | None = None

    @property
    def exceeds_spread(self) -> bool | None:
        return None if self.p_value is None else self.p_value < ALPHA


def paired_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of the paired t-test of ``a - b``; ``None`` below two pairs.

    Differences that are all equal leave no spread to compare with: the p-value is 0 when
    they are not zero and 1 when they are.
    """
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    if len(a) < 2:
        return None
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if np.all(diff == diff[0]):
        return 1.0 if diff[0] == 0 else 0.0
    return float(stats.ttest_rel(a, b).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error over ``p_values``)."""
    order = np.argsort(p_values, kind="stable")
    m, running, out = len(p_values), 0.0, [0.0] * len(p_values)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        out[int(i)] = running
    return out


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
    _holm_cache: dict[str, dict[tuple[str, str], float]] = field(
        default_factory=dict, init=False, repr=False
    )

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
        seeds: list[int] = []
        for r in sorted(self.results, key=lambda r: r.seed):
            if r.ablation != row or r.status != "done":
                continue
            if column == AVERAGE:
                parts = [r.results.get(c, {}).get(metric) for c in self.columns]
                if any(p is None or not math.isfinite(p) for p in parts):
                    continue
                values.append(float(np.mean(parts)))
                cis.append(None)
                seeds.append(r.seed)
                continue
            value = r.results.get(column, {}).get(metric)
            if value is None or not math.isfinite(value):
                continue
            values.append(float(value))
            cis.append(_ci(r.results[column].get(f"{metric}_ci")))
            seeds.append(r.seed)
        return Cell(values, cis, seeds)

    def compare(self, row: str, column: str, metric: str) -> Comparison | None:
        """``row`` against the reference row, or ``None`` for the reference or an empty cell.

        The difference is of the means over all finished seeds; the test pairs the seeds both
        rows finished. ``p_holm`` is corrected over the metric's cells (test columns, not
        ``Avg.``, which is made of them).
        """
        comparison = self._compare(row, column, metric)
        if comparison is not None and comparison.p_value is not None and column != AVERAGE:
            comparison.p_holm = self._holm(metric)[(row, column)]
        return comparison

    def _holm(self, metric: str) -> dict[tuple[str, str], float]:
        if metric not in self._holm_cache:
            tested = {
                (r, c): comparison.p_value
                for r in self.rows
                for c in self.columns
                if (comparison := self._compare(r, c, metric)) is not None
                and comparison.p_value is not None
            }
            adjusted = holm(list(tested.values()))
            self._holm_cache[metric] = dict(zip(tested, adjusted, strict=True))
        return self._holm_cache[metric]

    def _compare(self, row: str, column: str, metric: str) -> Comparison | None:
        if row == self.reference or self.reference not in self.rows:
            return None
        mine, ref = self.cell(row, column, metric), self.cell(self.reference, column, metric)
        if not mine.n or not ref.n:
            return None
        a, b = mine.by_seed(), ref.by_seed()
        shared = sorted(a.keys() & b.keys())
        p_value = paired_p([a[s] for s in shared], [b[s] for s in shared])
        return Comparison(mine.mean - ref.mean, p_value, shared)

    # ------------------------------------------------------------------ forms
    def _format(self, cell: Cell, comparison: Comparison | None) -> str:
        if not cell.n:
            return "failed"
        text = f"{100 * cell.mean:.1f}"
        if cell.n > 1:
            text += f" ± {100 * cell.sd:.1f}"
        if cell.ci is not None:
            text += f" [{100 * cell.ci[0]:.1f}, {100 * cell.ci[1]:.1f}]"
        if comparison is not None:
            text += f" ({100 * comparison.delta:+.1f})"
            if comparison.p_holm is not None and comparison.p_holm < ALPHA:
                text += " **"
            elif comparison.exceeds_spread:
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
                "Cells: mean ± standard deviation over seeds [95 % t-interval of the mean]. "
                "`*`: the difference from the reference exceeds the seed-to-seed spread (paired "
                "t-test over the seeds both rows finished, p < 0.05); `**`: also after Holm's "
                "correction over all cells of the table. With many cells a few `*` are expected "
                "by chance (1 in 20 where nothing differs); `**` allows for that.",
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
        """One panel per test column: each row's value and 95 % interval, the reference as a line.

        The interval is the cell's: bootstrap over test images for one seed, the t-interval of
        the mean over seeds otherwise. Filled dots differ from the reference beyond the seed
        spread.
        """
        from ..evaluate.plots import plot_intervals

        panels, reference = {}, {}
        for column in self.all_columns:
            rows = []
            for row in self.rows:
                cell, comparison = self.cell(row, column, metric), self.compare(row, column, metric)
                low, high = cell.ci if cell.ci is not None else (cell.mean, cell.mean)
                marked = row == self.reference or bool(comparison and comparison.exceeds_spread)
                rows.append((row, 100 * cell.mean, 100 * low, 100 * high, marked))
            panels[column] = rows
            reference[column] = 100 * self.cell(self.reference, column, metric).mean
        return plot_intervals(
            panels,
            path,
            xlabel=f"{metric.upper()} x100 (95% interval)",
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
                            "sd": cell.sd if cell.n > 1 else None,
                            "ci_low": ci[0] if ci else None,
                            "ci_high": ci[1] if ci else None,
                            "delta": comparison.delta if comparison else None,
                            "p_value": comparison.p_value if comparison else None,
                            "p_holm": comparison.p_holm if comparison else None,
                            "paired_seeds": comparison.seeds if comparison else [],
                            "exceeds_spread": comparison.exceeds_spread if comparison else None,
                            "values": cell.values,
                            "seeds": cell.seeds,
                        }
                    )
        return out

    def to_csv(self) -> str:
        buffer = io.StringIO()
        records = self.records()
        writer = csv.DictWriter(buffer, fieldnames=list(records[0]) if records else ["ablation"])
        writer.writeheader()
        for record in records:
            flat = {k: " ".join(map(str, v)) for k, v in record.items() if isinstance(v, list)}
            flat["values"] = " ".join(f"{v:.6f}" for v in record["values"])
            writer.writerow({**record, **flat})
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
        return json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n"
