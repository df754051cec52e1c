"""The ablation table and registry: aggregation over seeds against numpy/scipy, forms, rows."""

from __future__ import annotations

import csv
import io
import json
import math
import re

import numpy as np
import pytest
from scipy import stats

from mfclip.config import ConfigError
from mfclip.protocol import load_ablations, load_protocol, resolve_ablations
from mfclip.protocol.table import AVERAGE, AblationTable, RowResult, holm, paired_p
from mfclip.train.config import load_train_config


def _run(ablation: str, seed: int, auc_a: float, auc_b: float, **kw) -> RowResult:
    results = {
        "A": {"auc": auc_a, "eer": 1 - auc_a, "auc_ci": [auc_a - 0.05, auc_a + 0.02]},
        "B": {"auc": auc_b, "eer": 1 - auc_b, "auc_ci": [auc_b - 0.1, auc_b + 0.03]},
    }
    return RowResult(ablation, seed, "done", results, **kw)


def _table(results: list[RowResult], rows=("full", "small", "big")) -> AblationTable:
    return AblationTable(
        rows=list(rows),
        columns=["A", "B"],
        metrics=("auc", "eer"),
        results=results,
        changes={"full": "(none)", "small": "x=1", "big": "x=2"},
    )


SEEDED = [
    _run("full", 0, 0.90, 0.70),
    _run("full", 1, 0.91, 0.72),
    _run("full", 2, 0.89, 0.71),
    _run("small", 0, 0.905, 0.69),
    _run("small", 1, 0.895, 0.73),
    _run("small", 2, 0.91, 0.70),
    _run("big", 0, 0.70, 0.50),
    _run("big", 1, 0.72, 0.52),
    _run("big", 2, 0.71, 0.49),
]


def test_cells_over_seeds_match_numpy_and_scipy():
    table = _table(SEEDED)
    cell = table.cell("big", "B", "auc")
    assert cell.values == [0.50, 0.52, 0.49]
    assert cell.mean == pytest.approx(np.mean([0.50, 0.52, 0.49]), abs=1e-12)
    assert cell.sd == pytest.approx(np.std([0.50, 0.52, 0.49], ddof=1), abs=1e-12)
    low, high = stats.t.interval(0.95, 2, loc=cell.mean, scale=cell.sd / math.sqrt(3))
    assert cell.ci == pytest.approx((low, high), abs=1e-12)
    avg = table.cell("full", AVERAGE, "auc")  # per-seed average of the columns, then mean
    assert avg.values == pytest.approx([0.80, 0.815, 0.80])
    comparison = table.compare("big", "A", "auc")
    expected = stats.ttest_rel([0.70, 0.72, 0.71], [0.90, 0.91, 0.89]).pvalue
    assert comparison.delta == pytest.approx(0.71 - 0.90)
    assert comparison.p_value == pytest.approx(expected, rel=1e-9)
    assert comparison.seeds == [0, 1, 2] and comparison.exceeds_spread is True
    assert table.compare("small", "A", "auc").exceeds_spread is False  # within seed spread
    assert table.compare("full", "A", "auc") is None


def test_holm_correction_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    for p_values in ([0.01, 0.04, 0.03, 0.005], rng.uniform(0, 0.2, 17).tolist(), [0.2]):
        expected = multipletests(p_values, method="holm")[1]
        assert holm(p_values) == pytest.approx(expected, abs=1e-12)
    table = _table(SEEDED)
    family = {
        (r, c): stats.ttest_rel(
            table.cell(r, c, "eer").values, table.cell("full", c, "eer").values
        ).pvalue
        for r in ("small", "big")
        for c in ("A", "B")
    }
    adjusted = dict(
        zip(family, multipletests(list(family.values()), method="holm")[1], strict=True)
    )
    for (r, c), p in adjusted.items():
        assert table.compare(r, c, "eer").p_holm == pytest.approx(p, rel=1e-9)
    assert table.compare("big", AVERAGE, "eer").p_holm is None  # Avg. is made of the others


def test_comparison_pairs_the_seeds_both_rows_finished():
    results = [
        *SEEDED[:3],
        RowResult("small", 0, "failed", error="boom"),
        _run("small", 1, 0.80, 0.70),
        _run("small", 2, 0.79, 0.70),
    ]
    comparison = _table(results, rows=("full", "small")).compare("small", "A", "auc")
    assert comparison.seeds == [1, 2]
    expected = stats.ttest_rel([0.80, 0.79], [0.91, 0.89]).pvalue
    assert comparison.p_value == pytest.approx(expected, rel=1e-9)
    assert comparison.delta == pytest.approx(0.795 - 0.90)  # means over all finished seeds


def test_markdown_marks_only_differences_beyond_the_spread():
    text = _table(SEEDED).to_markdown()
    auc_part = text.split("## EER")[0]
    lines = {
        line.split("|")[1].strip(): line for line in auc_part.splitlines() if line.startswith("| ")
    }
    assert re.search(r"71\.0 ± 1\.0 \[\d+\.\d, \d+\.\d\] \(-19\.0\) \*", lines["big"])
    assert "*" not in lines["small"] and "*" not in lines["full"]
    assert "## AUC (higher is better)" in text and "## EER (lower is better)" in text
    assert "Seeds: 0, 1, 2 (3 per row)" in text and "paired" in text and "Holm" in text


def test_one_seed_shows_bootstrap_interval_and_marks_nothing():
    table = _table([_run("full", 0, 0.9, 0.7), _run("big", 0, 0.6, 0.5)], rows=("full", "big"))
    text = table.to_markdown()
    assert "60.0 [55.0, 62.0] (-30.0)" in text
    assert " *" not in text and "--seeds 3" in text
    assert table.cell("big", "A", "auc").ci == pytest.approx((0.55, 0.62))
    assert table.compare("big", "A", "auc").p_value is None


def test_failed_runs_are_reported_and_leave_other_seeds():
    results = [
        *SEEDED[:3],
        RowResult("small", 0, "failed", error="ConfigError: bad key\ntraceback"),
        _run("small", 1, 0.9, 0.7),
        *(RowResult("big", s, "failed", error="RuntimeError: boom") for s in range(3)),
    ]
    table = _table(results)
    assert table.cell("small", "A", "auc").n == 1
    assert table.cell("big", "A", "auc").n == 0
    text = table.to_markdown()
    big = next(line for line in text.splitlines() if line.startswith("| big "))
    assert big.count("failed") == 3
    assert "## Failed runs" in text and "`small` seed 0: ConfigError: bad key" in text
    assert len(table.failed) == 4


def test_csv_and_json_forms_agree_and_are_strict():
    table = _table([*SEEDED, RowResult("big", 3, "done", {"A": {"auc": math.nan}})])
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert len(rows) == 3 * 3 * 2  # rows x (A, B, Avg.) x metrics
    big_b = next(
        r for r in rows if r["ablation"] == "big" and r["column"] == "B" and r["metric"] == "auc"
    )
    assert float(big_b["mean"]) == pytest.approx(np.mean([0.50, 0.52, 0.49]))
    assert big_b["exceeds_spread"] == "True" and big_b["n_seeds"] == "3"
    payload = json.loads(table.to_json())  # strict JSON: NaN would raise in allow_nan=False
    assert payload["seeds"] == [0, 1, 2, 3]
    assert payload["columns"] == ["A", "B", AVERAGE]
    assert len(payload["cells"]) == len(rows)


def test_paired_p_edge_cases():
    assert paired_p([0.5], [0.6]) is None
    assert paired_p([0.5, 0.6], [0.5, 0.6]) == 1.0
    assert paired_p([0.5, 0.6], [0.4, 0.5]) == 0.0  # a constant shift: no spread at all
    with pytest.raises(ValueError, match="equal lengths"):
        paired_p([0.5, 0.6], [0.5])


def test_figure_draws_each_cells_interval(tmp_path, monkeypatch):
    import mfclip.evaluate.plots as plots

    drawn = {}
    monkeypatch.setattr(plots, "plot_intervals", lambda panels, path, **kw: drawn.update(panels))
    table = _table(SEEDED)
    table.plot(tmp_path / "a.png")
    name, _, low, high, marked = drawn["B"][2]
    ci = table.cell("big", "B", "auc").ci
    assert name == "big" and marked and (low, high) == pytest.approx((100 * ci[0], 100 * ci[1]))
    monkeypatch.undo()
    path = table.plot(tmp_path / "ablations.png")
    assert path.is_file() and path.stat().st_size > 1000


# ---------------------------------------------------------------------- registry
REQUIRED = {
    "full",
    "no-noise",
    "spa-off",
    "spa-static",
    "no-kd",
    "no-cmc",
    "prompts-l1",
    "fle-concat",
    "fusion-concat",
    "fusion-gate",
    "fle-fusion-mean",
    "fle-fusion-mlp",
    "official",
    "linear-probe",
    "clip-ft",
    "aug-none",
    "blur-jpeg",
    "resize-crop-jitter",
    "sbi",
}


def test_registry_rows_are_valid_and_each_changes_the_config(tmp_path):
    registry = load_ablations()
    assert set(registry) >= REQUIRED
    training = load_protocol("faces-sample-cross-generator").training
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n")
    base = {**training, "data": {**training["data"], "manifest": str(manifest)}}

    def config(row):
        from mfclip.config import deep_merge

        return load_train_config(deep_merge(base, row.overrides())).to_dict()

    full = config(registry["full"])
    for name, row in registry.items():
        resolved = config(row)  # a typo in a key is a ConfigError here
        if name != "full":
            assert resolved != full, f"ablation {name} changes nothing"
    assert config(registry["no-noise"])["model"]["noise"]["enabled"] is False
    assert config(registry["fle-concat"])["model"]["fle"]["mode"] == "concat"


def test_resolve_ablations():
    registry = load_ablations()
    quick = resolve_ablations("quick", registry)
    assert quick[0].name == "full" and {"no-noise", "linear-probe"} <= {r.name for r in quick}
    assert [r.name for r in resolve_ablations("spa-off", registry)] == ["full", "spa-off"]
    assert len(resolve_ablations("all", registry)) == len(registry)
    with pytest.raises(ConfigError, match="unknown ablation or group 'nope'"):
        resolve_ablations("full,nope", registry)
    with pytest.raises(ConfigError, match="empty"):
        resolve_ablations(" , ", registry)


def test_user_registry_errors(tmp_path):
    bad = tmp_path / "a.yaml"
    bad.write_text("x: {set: {a: 1}, colour: red}\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_ablations(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_ablations(tmp_path / "missing.yaml")
