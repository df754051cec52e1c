"""``evaluate`` and ``detect`` under ``torchrun`` (2 gloo processes on the CPU) equal one process.

Also the streaming side of ``detect``: ``--from-list`` (a file, or stdin), and ``--resume``
after a run that was killed or left a truncated last line, which must end equal to an
uninterrupted run. The sharding and resume helpers are checked alone first.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import mfclip
from mfclip.cli import main
from mfclip.distributed import shard_indices
from mfclip.inference.results import FIELDS, ResumeError, resume_results
from mfclip.inference.streaming import read_list

from .test_train import make_dataset

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _mfclip(
    args: list[str], nproc: int = 1, stdin: str | None = None
) -> subprocess.CompletedProcess:
    """``python -m mfclip ARGS``, or the same under ``torchrun --nproc_per_node NPROC``."""
    cmd = [sys.executable]
    if nproc > 1:
        cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += ["-m", "mfclip", *args]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env=_env(), cwd=ROOT, input=stdin
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = mfclip.create_model("mfclip-tiny")
    model.training_info = {"threshold": 0.4}
    return model.save_pretrained(tmp_path_factory.mktemp("model") / "m")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 small PNGs and their manifest; ``img039.png`` (index 39: rank 1's) is broken."""
    manifest = make_dataset(tmp_path_factory.mktemp("data"))
    (manifest.parent / "img039.png").write_bytes(b"not an image")
    return manifest


def _images(data: Path) -> list[str]:
    return sorted(str(p) for p in data.parent.glob("*.png"))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _same_rows(got: list[dict], want: list[dict]) -> None:
    """Same rows in the same order; probabilities within 1e-6."""
    assert [r["source"] for r in got] == [r["source"] for r in want]
    for a, b in zip(got, want, strict=True):
        for key in FIELDS:
            if key in ("fake_prob", "raw_prob", "threshold") and a[key] not in (None, ""):
                assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-6), key
            elif key != "reason":
                assert a[key] == b[key], key


def _close(got: object, want: object, where: str) -> None:
    """Equal JSON, numbers within 1e-9 (scores equal to 1e-6 rank the same way)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for key in want:
            _close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            _close(a, b, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-9), where
    else:
        assert got == want, where


def test_shards_cover_every_index_once() -> None:
    for n in (0, 1, 5, 10):
        for world in (1, 2, 3):
            for contiguous in (False, True):
                parts = [list(shard_indices(n, r, world, contiguous)) for r in range(world)]
                assert sorted(i for p in parts for i in p) == list(range(n))
    assert list(shard_indices(5, 1, 2)) == [1, 3] and list(shard_indices(5, 0, 2, True)) == [
        0,
        1,
        2,
    ]
    with pytest.raises(ValueError, match="rank must be"):
        shard_indices(3, 2, 2)


def test_read_list_skips_blanks_and_comments(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("# inputs\na.png\n\n  b.png  \n#c.png\nc.png")
    assert list(read_list(str(listing))) == ["a.png", "b.png", "c.png"]
    with pytest.raises(FileNotFoundError):
        read_list(str(tmp_path / "missing.txt"))


def test_resume_keeps_the_complete_prefix(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    rows = [dict.fromkeys(FIELDS) | {"source": s, "kind": k} for s, k in
            [("a", "image"), ("v", "frame"), ("v", "video"), ("w", "frame")]]  # fmt: skip
    text = "".join(json.dumps(r) + "\n" for r in rows)
    out.write_text(text + '{"source": "x", "ki')
    inputs = iter(["a", "v", "w", "z"])
    assert resume_results(out, inputs) == 2
    assert list(inputs) == ["w", "z"]  # the caller goes on from here
    assert out.read_text().splitlines() == text.splitlines()[:3]  # frame of "w" and tail cut
    with pytest.raises(ResumeError, match="written for other inputs"):
        resume_results(out, iter(["a", "other"]))
    assert resume_results(tmp_path / "none.csv", iter(["a"])) == 0


@pytest.mark.slow
def test_evaluate_two_processes_equals_one(model_dir: Path, data: Path, tmp_path: Path) -> None:
    args = ["evaluate", "--model", str(model_dir), "--data", str(data), "--split", "all"]
    args += ["--workers", "0", "--bootstrap", "50", "--quiet", "--perturb", "jpeg=50"]
    one = _mfclip([*args, "--out", str(tmp_path / "one")])
    two = _mfclip([*args, "--out", str(tmp_path / "two")], nproc=2)
    assert two.stdout.count("AUC ") == 1 and "skipped 1 unreadable" in two.stdout  # rank 0 only
    assert two.stdout == one.stdout.replace(str(tmp_path / "one"), str(tmp_path / "two"))
    for name in ("metrics.json", "robustness.json", "by_forgery_type/metrics.json"):
        got = json.loads((tmp_path / "two" / name).read_text())
        _close(got, json.loads((tmp_path / "one" / name).read_text()), name)
    want = list(csv.DictReader((tmp_path / "one" / "scores.csv").open()))
    got = list(csv.DictReader((tmp_path / "two" / "scores.csv").open()))
    assert len(got) == 39 and [r["path"] for r in got] == [r["path"] for r in want]
    for a, b in zip(got, want, strict=True):
        assert float(a["score"]) == pytest.approx(float(b["score"]), abs=1e-6)
        assert a["label"] == b["label"] and a["generator"] == b["generator"]


@pytest.mark.slow
def test_detect_two_processes_equals_one(model_dir: Path, data: Path, tmp_path: Path) -> None:
    """Positional inputs and ``--from-list``: every input once, in input order, same scores."""
    images = _images(data)
    base = ["detect", "--model", str(model_dir), "--workers", "1", "--batch-size", "4"]
    assert main([*base, *images, "--out", str(tmp_path / "one.jsonl"), "--quiet"]) == 0
    want = _jsonl(tmp_path / "one.jsonl")
    assert [r["source"] for r in want] == images and want[39]["error"]

    two = _mfclip([*base, str(data.parent), "--out", str(tmp_path / "two.jsonl")], nproc=2)
    _same_rows(_jsonl(tmp_path / "two.jsonl"), want)
    assert f"rank 1: {images[39]}: " in two.stderr  # the broken file, named with its rank
    assert two.stderr.count("scored 39, failed 1 of 40 input(s)") == 1  # rank 0 prints

    listing = tmp_path / "list.txt"
    listing.write_text("# all of them\n" + "\n\n".join(images) + "\n")
    _mfclip([*base, "--from-list", str(listing), "--out", str(tmp_path / "l.csv")], nproc=2)
    main([*base, *images, "--out", str(tmp_path / "one.csv"), "--quiet"])
    one_csv = list(csv.DictReader((tmp_path / "one.csv").open()))
    _same_rows(list(csv.DictReader((tmp_path / "l.csv").open())), one_csv)


@pytest.mark.slow
def test_from_list_reads_stdin(model_dir: Path, data: Path, tmp_path: Path) -> None:
    images = _images(data)[:5]
    args = ["detect", "--model", str(model_dir), "--from-list", "-", "--quiet"]
    done = _mfclip(args, stdin="\n".join(images) + "\n")
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert [r["source"] for r in rows] == images and all(r["fake_prob"] for r in rows)


@pytest.mark.slow
def test_resume_after_a_truncated_file_equals_an_uninterrupted_run(
    model_dir: Path, data: Path, tmp_path: Path
) -> None:
    """By hand: the first rows and half a line, as a killed run leaves them; then 2 ranks."""
    images = _images(data)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(images) + "\n")
    base = ["detect", "--model", str(model_dir), "--from-list", str(listing), "--quiet"]
    full = tmp_path / "full.jsonl"
    assert main([*base, "--out", str(full)]) == 0
    lines = full.read_text().splitlines(keepends=True)
    part = tmp_path / "part.jsonl"
    part.write_text("".join(lines[:13]) + lines[13][:25])
    _mfclip([*base, "--out", str(part), "--resume", "--batch-size", "4"], nproc=2)
    _same_rows(_jsonl(part), _jsonl(full))
    csv_part = tmp_path / "part.csv"
    csv_part.write_text(",".join(FIELDS)[:20])  # killed while writing the header
    assert main([*base, "--out", str(csv_part), "--resume"]) == 0
    assert main([*base, "--out", str(tmp_path / "full.csv")]) == 0
    assert csv_part.read_text() == (tmp_path / "full.csv").read_text()


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_file(
    model_dir: Path, data: Path, tmp_path: Path
) -> None:
    """SIGKILL once rows have appeared (flushed as they come), then ``--resume``."""
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(_images(data) * 25) + "\n")  # 1000 inputs, one broken in 40
    out = tmp_path / "r.jsonl"
    base = ["detect", "--model", str(model_dir), "--from-list", str(listing), "--quiet"]
    args = [*base, "--out", str(out), "--batch-size", "4", "--workers", "1"]
    cmd = [sys.executable, "-m", "mfclip", *args]
    proc = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_file() and out.read_text().count("\n") >= 40:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    written = out.read_text().count("\n")
    assert 40 <= written < 1000, "the run was not killed mid-way"
    _mfclip([*args, "--resume"])
    assert main([*base, "--out", str(tmp_path / "full.jsonl")]) == 0
    got, want = _jsonl(out), _jsonl(tmp_path / "full.jsonl")
    assert len(got) == 1000
    _same_rows(got, want)
