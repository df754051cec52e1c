"""The benchmarks run in --quick mode and write their JSON (no timing is asserted).

``--synthetic`` keeps the tests off the shared face sample (tests never read ``../shared``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

MACHINE_KEYS = {"device", "cpu_count", "torch", "torch_threads", "load_average"}


def _load(out: Path, name: str) -> dict:
    data = json.loads((out / f"{name}.json").read_text())
    assert data["benchmark"] == name
    assert set(data["machine"]) >= MACHINE_KEYS
    return data


def _check_target(data: dict) -> None:
    assert {"name", "threshold", "passed"} <= set(data["target"])
    assert isinstance(data["target"]["passed"], bool)


def test_selection(tmp_path):
    from benchmarks import bench_selection

    bench_selection.main(["--quick", "--synthetic", "--images", "8", "--out-dir", str(tmp_path)])
    data = _load(tmp_path, "selection")
    _check_target(data)
    assert data["target"]["identical"] is True
    assert {"agreement", "skimage", "throughput", "scaling", "by_input_size"} <= set(data)
    assert [row["size"] for row in data["by_input_size"]] == [224, 336, 448]


def test_inference(tmp_path):
    from benchmarks import bench_inference

    bench_inference.main(["--quick", "--batch", "2", "--repeats", "1", "--out-dir", str(tmp_path)])
    data = _load(tmp_path, "inference")
    _check_target(data)
    assert {"bare", "mfclip"} <= set(data["stats"])
    assert {"bare", "mfclip"} <= set(data["memory"])
    assert data["memory"]["mfclip"]["peak_rss_mib"] > 0
    assert "selection" in data["components_s"]


def test_training_through_run_all(tmp_path):
    from benchmarks import run_all

    code = run_all.main(["--quick", "--only", "training", "--out-dir", str(tmp_path)])
    assert code == 0
    data = _load(tmp_path, "training")
    _check_target(data)
    assert data["distinct_prompts"] < data["prompt_rows"]
    assert {"forward", "backward", "optimizer"} <= set(data["stats"]["mfclip"]["phases_median_s"])
    summary = _load(tmp_path, "summary")
    assert "training" in summary["targets"]


def test_scaling(tmp_path):
    from benchmarks import bench_scaling

    bench_scaling.main(["--quick", "--out-dir", str(tmp_path)])
    data = _load(tmp_path, "scaling")
    batches = [row["batch"] for row in data["tables"]["tiny"] if row["path"] == "mfclip"]
    assert batches == [1, 2, 4, 8, 16]


def test_pipeline(tmp_path):
    from benchmarks import bench_pipeline

    args = ["--quick", "--synthetic", "--images", "12", "--batch", "4"]
    bench_pipeline.main([*args, "--out-dir", str(tmp_path)])
    data = _load(tmp_path, "pipeline")
    _check_target(data)
    assert [r["decode"] for r in data["runs"]] == ["thread", "process", "inline"]
    run = data["runs"][0]
    assert run["images"] == 12 and run["errors"] == 0
    assert 0.0 <= run["wait_fraction"] <= 1.0
