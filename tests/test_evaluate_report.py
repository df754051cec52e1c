"""Reports (JSON/CSV/Markdown/scores) and headless plots from mfclip.evaluate."""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mfclip.evaluate import metrics as M
from mfclip.evaluate import plots, report


@pytest.fixture(scope="module")
def records() -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for v in range(24):
        label = int(v % 3 != 0)
        gen = "real" if label == 0 else ("DDPM" if v % 3 == 1 else "DiffAE")
        for f in range(4):
            rows.append(
                {
                    "generator": gen,
                    "score": float(np.clip(rng.normal(0.3 + 0.4 * label, 0.2), 0, 1)),
                    "label": label,
                    "path": f"{gen}/vid{v:02d}/{f}.png",
                    "group": f"vid{v:02d}",
                }
            )
    return rows


@pytest.fixture(scope="module")
def results(records: list[dict]) -> dict:
    return M.breakdown(records, "generator", threshold=0.45, group_key="group", bootstrap=100)


def test_write_report_files_and_json_roundtrip(tmp_path: Path, results: dict, records) -> None:
    paths = report.write_report(tmp_path / "out", results, "GenFace test", records=records)
    assert set(paths) == {"json", "csv", "markdown", "scores"}
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 0
    # Strict JSON (no NaN tokens) that round-trips to the same numbers.
    text = paths["json"].read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["name"] == "GenFace test"
    assert list(data["subsets"]) == ["all", "DDPM", "DiffAE"]
    for subset, res in results.items():
        loaded = data["subsets"][subset]
        assert set(loaded) == set(res)
        for key, value in res.items():
            if isinstance(value, tuple):
                assert loaded[key] == list(value)
            else:
                assert loaded[key] == value
    # No temp files left behind.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "metrics.csv", "metrics.json", "report.md", "scores.csv",
    ]  # fmt: skip


def test_json_writes_nan_as_null(tmp_path: Path) -> None:
    single = M.summarize([1, 1, 1], [0.2, 0.4, 0.9], bootstrap=10)
    paths = report.write_report(tmp_path, single, "only fakes")
    data = json.loads(paths["json"].read_text())
    assert list(data["subsets"]) == ["only fakes"]  # a single summary becomes one row
    assert data["subsets"]["only fakes"]["auc"] is None
    assert data["subsets"]["only fakes"]["auc_ci"] == [None, None]
    assert "nan [" not in paths["markdown"].read_text()


def test_metrics_csv_one_row_per_subset(tmp_path: Path, results: dict) -> None:
    paths = report.write_report(tmp_path, results, "x")
    with paths["csv"].open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["subset"] for r in rows] == list(results)
    for row, res in zip(rows, results.values(), strict=True):
        assert float(row["auc"]) == res["auc"]
        assert float(row["video_auc"]) == res["video_auc"]
        assert (float(row["auc_ci_lo"]), float(row["auc_ci_hi"])) == res["auc_ci"]
        assert int(row["n_fake"]) == res["n_fake"]


def test_markdown_table_rows_and_columns(tmp_path: Path, results: dict) -> None:
    md = report.write_report(tmp_path, results, "GenFace").__getitem__("markdown").read_text()
    main_table = md.split("\n\n")[1]  # after the title; the operating-point table follows
    table = [line for line in main_table.splitlines() if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header == [
        "Subset", "AUC", "AP", "EER", "ACC@0.5", "ACC@thr", "Video AUC", "N (real/fake)",
    ]  # fmt: skip
    body = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    assert [r[0] for r in body] == ["all", "DDPM", "DiffAE"]
    cell = re.compile(r"^\d\.\d{3} \[\d\.\d{2}, \d\.\d{2}\]$")
    for row, res in zip(body, results.values(), strict=True):
        assert len(row) == len(header)
        assert all(cell.match(c) for c in row[1:7]), row
        assert row[1].startswith(f"{res['auc']:.3f} [{res['auc_ci'][0]:.2f}, ")
        assert row[7] == f"{res['n']} ({res['n_real']}/{res['n_fake']})"
    assert "0.45" in md  # the validation threshold is stated


def test_format_metric() -> None:
    assert report.format_metric(0.91234, (0.8912, 0.9333)) == "0.912 [0.89, 0.93]"
    assert report.format_metric(0.5) == "0.500"
    assert report.format_metric(None) == "-"
    assert report.format_metric(float("nan"), (float("nan"), float("nan"))) == "nan"


def test_scores_csv_columns(tmp_path: Path, records: list[dict]) -> None:
    cols = {k: [r[k] for r in records] for k in records[0]}
    paths = report.write_report(tmp_path, M.summarize(cols["label"], cols["score"], bootstrap=0),
                                "x", records=cols)  # fmt: skip
    with paths["scores"].open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "group", "label", "score", "generator"]
    assert len(rows) == len(records) + 1
    assert rows[1][0] == records[0]["path"]
    assert float(rows[1][3]) == records[0]["score"]


def test_write_is_atomic_on_failure(tmp_path: Path, results: dict, monkeypatch) -> None:
    paths = report.write_report(tmp_path, results, "first")
    before = paths["json"].read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        report.write_report(tmp_path, results, "second")
    assert paths["json"].read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- protocol table


def test_protocol_table_layout_and_average() -> None:
    rows = {
        "CollabDiff": {"CollabDiff": 0.999, "DDPM": 0.80, "DiffAE": 0.70},
        "DDPM": {"CollabDiff": 0.60, "DDPM": 0.99, "DiffAE": float("nan")},
    }
    md = report.protocol_table(rows, metric="auc", bold_best=True)
    lines = md.strip().splitlines()
    assert len(lines) == 4
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[1:] == ["CollabDiff", "DDPM", "DiffAE", "Avg."]
    first = [c.strip() for c in lines[2].strip("|").split("|")]
    second = [c.strip() for c in lines[3].strip("|").split("|")]
    assert first[0] == "CollabDiff" and second[0] == "DDPM"
    assert first[1:] == ["**99.90**", "80.00", "70.00", "**83.30**"]
    assert second[1:] == ["60.00", "**99.00**", "-", "79.50"]  # NaN skipped in average


def test_protocol_table_eer_lower_is_better() -> None:
    md = report.protocol_table({"a": {"x": 0.1}, "b": {"x": 0.2}}, metric="eer", bold_best=True)
    assert "**10.00**" in md and "**20.00**" not in md


# --------------------------------------------------------------------------- plots


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5_000
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert min(im.size) > 200


def test_plot_roc_and_pr_write_png(tmp_path: Path, records: list[dict]) -> None:
    y = [r["label"] for r in records]
    s = [r["score"] for r in records]
    rng = np.random.default_rng(0)
    curves = {"test": (y, s), "random": (y, rng.random(len(y)).tolist())}
    roc = plots.plot_roc(curves, tmp_path / "roc.png")
    pr = plots.plot_pr(curves, tmp_path / "sub" / "pr.png")
    _assert_png(roc)
    _assert_png(pr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roc.png", "sub"]


def test_plot_tsne(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(0, 1, (30, 8)), rng.normal(4, 1, (30, 8))])
    names = ["real"] * 30 + ["fake"] * 30
    _assert_png(plots.plot_tsne(feats, names, tmp_path / "tsne.png", seed=0))
    with pytest.raises(ValueError, match="labels"):
        plots.plot_tsne(feats, names[:-1], tmp_path / "bad.png")


def test_plot_tsne_without_sklearn(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        plots.plot_tsne(np.zeros((10, 3)), ["a"] * 10, tmp_path / "t.png")


def test_lazy_plot_exports() -> None:
    import mfclip.evaluate as ev

    assert ev.plot_roc is plots.plot_roc
    with pytest.raises(AttributeError):
        _ = ev.not_a_function
    assert not math.isnan(ev.roc_auc([0, 1], [0.2, 0.8]))
