"""Manifest format, deterministic group splits and the summary table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mfclip.data import (
    ManifestError,
    Record,
    assign_splits,
    group_leaks,
    read_manifest,
    split_of,
    summarize,
    write_manifest,
)
from mfclip.data.splits import parse_ratios


def test_record_normalises_labels_and_splits() -> None:
    assert Record("a.png", "1").label == "fake"
    assert Record("a.png", 0).label == "real"
    assert Record("a.png", "Pristine", split="Validation").split == "val"
    with pytest.raises(ValueError, match="unknown label"):
        Record("a.png", "maybe")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_roundtrip_with_relative_paths_and_extras(tmp_path: Path, suffix: str) -> None:
    image = tmp_path / "data" / "fake" / "x.png"
    rows = [
        Record(str(image), "fake", "T2I", "diffusion", "SDXL", "train", "id1", "a prompt"),
        Record(str(tmp_path / "data" / "real" / "y.png"), "real", extra={"status": "ok"}),
    ]
    out = write_manifest(rows, tmp_path / "data" / f"manifest{suffix}")
    text = out.read_text()
    assert str(tmp_path) not in text  # stored relative to the manifest's folder
    back = read_manifest(out)
    assert back[0].path == "fake/x.png"
    assert (back[0].forgery_type, back[0].generator, back[0].prompt) == ("T2I", "SDXL", "a prompt")
    assert back[1].extra.get("status") == "ok" and back[1].label == "real"


def test_csv_header_is_documented_order(tmp_path: Path) -> None:
    out = write_manifest([Record("a.png", "real", extra={"reason": "x"})], tmp_path / "m.csv")
    header = out.read_text().splitlines()[0]
    assert header == "path,label,forgery_type,family,generator,split,group,prompt,reason"


def test_read_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("path,label\na.png,real\nb.png,perhaps\n")
    with pytest.raises(ManifestError, match=r"m\.csv:3: unknown label"):
        read_manifest(bad)
    bad.write_text("file,label\na.png,real\n")
    with pytest.raises(ManifestError, match="missing column"):
        read_manifest(bad)
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text(json.dumps({"path": "a.png", "label": "fake"}) + "\n{oops\n")
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: invalid JSON"):
        read_manifest(jsonl)
    (tmp_path / "m.txt").write_text("path,label\n")
    with pytest.raises(ManifestError, match="unknown manifest format"):
        read_manifest(tmp_path / "m.txt")


def test_hash_splits_are_deterministic_and_never_split_a_group() -> None:
    records = [
        Record(f"v{g}/f{i}.png", "fake", group=f"video{g}") for g in range(400) for i in range(3)
    ]
    first = assign_splits(records)
    assert [r.split for r in first] == [r.split for r in assign_splits(records)]
    assert not group_leaks(first)
    counts = {s: sum(r.split == s for r in first) / len(first) for s in ("train", "val", "test")}
    assert (
        0.7 < counts["train"] < 0.9 and 0.04 < counts["val"] < 0.16 and 0.04 < counts["test"] < 0.16
    )
    assert split_of("video1", (0, 0, 1)) == "test"
    assert parse_ratios("8,1,1") == pytest.approx((0.8, 0.1, 0.1))


def test_official_splits_are_kept_unless_overwritten() -> None:
    records = [Record("a.png", "real", split="test", group="g")]
    assert assign_splits(records)[0].split == "test"
    assert assign_splits(records, ratios=(1, 0, 0), overwrite=True)[0].split == "train"


def test_summary_counts_per_split_label_generator() -> None:
    records = [
        Record("a.png", "real", generator="FFHQ", split="train", group="1"),
        Record("b.png", "fake", generator="DDPM", split="train", group="2"),
        Record("c.png", "fake", generator="DDPM", split="train", group="2"),
        Record("d.png", "fake", generator="DDPM", split="test", group="3"),
    ]
    text = summarize(records)
    lines = text.splitlines()
    assert lines[0].split() == ["split", "label", "generator", "images", "groups"]
    assert any(line.split() == ["train", "fake", "DDPM", "2", "1"] for line in lines)
    assert any(line.split() == ["test", "fake", "DDPM", "1", "1"] for line in lines)
    assert lines.index(next(line for line in lines if line.startswith("train"))) < lines.index(
        next(line for line in lines if line.startswith("test"))
    )
    assert text.endswith("total: 4 images, 3 groups")
