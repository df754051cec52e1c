"""Docs generated from code must match the code."""

from __future__ import annotations

from pathlib import Path

from mfclip.config import reference_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_current():
    committed = (ROOT / "docs" / "config.md").read_text()
    assert committed == reference_markdown() + "\n", (
        "docs/config.md is stale: run `mfclip config reference --out docs/config.md`"
    )


def test_every_config_field_is_documented():
    text = reference_markdown()
    undocumented = [
        line for line in text.splitlines() if line.startswith("| `") and line.endswith("|  |")
    ]
    assert undocumented == []
