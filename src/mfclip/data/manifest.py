"""Reading and writing manifests (CSV or JSONL, chosen by the file suffix).

Paths in a manifest are stored relative to the manifest's own folder whenever possible, so a
dataset folder can be moved or mounted elsewhere together with its manifest.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import ManifestError
from .records import COLUMNS, Record

__all__ = ["ManifestError", "read_manifest", "resolve_path", "write_manifest"]


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ManifestError(f"{path}: unknown manifest format '{suffix}' (use .csv or .jsonl)")


def _rows(path: Path) -> Iterable[tuple[int, dict]]:
    if _format(path) == "csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = {"path", "label"} - set(reader.fieldnames or [])
            if missing:
                raise ManifestError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            for row in reader:
                if None in row:
                    raise ManifestError(f"{path}:{reader.line_num}: more fields than the header")
                if any((v or "").strip() for v in row.values()):
                    yield reader.line_num, row
        return
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise ManifestError(f"{path}:{number}: expected a JSON object per line")
            yield number, row


def read_manifest(path: str | Path) -> list[Record]:
    """All rows of a manifest; one :class:`ManifestError` naming the line for a bad row."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    records = []
    for number, row in _rows(path):
        if not str(row.get("path") or "").strip():
            raise ManifestError(f"{path}:{number}: empty 'path'")
        if "label" not in row:
            raise ManifestError(f"{path}:{number}: missing 'label'")
        try:
            records.append(Record.from_row(row))
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"{path}:{number}: {exc}") from None
    return records


def _relative(path: str, base: Path) -> str:
    """``path`` relative to ``base`` when both live on the same drive; POSIX separators."""
    absolute = os.path.abspath(path)
    try:
        rel = os.path.relpath(absolute, os.path.abspath(base))
    except ValueError:  # different drives on Windows
        return Path(absolute).as_posix()
    return Path(rel).as_posix()


def write_manifest(records: Iterable[Record], path: str | Path, relative: bool = True) -> Path:
    """Write ``records``; with ``relative`` the paths become relative to the manifest's folder.

    Record paths are interpreted relative to the current directory (importers produce them so).
    """
    path = Path(path)
    fmt = _format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for record in records:
        row = record.to_row()
        if relative:
            row["path"] = _relative(record.path, path.parent)
        rows.append(row)
    extras = sorted({k for row in rows for k in row} - set(COLUMNS))
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        if fmt == "csv":
            writer = csv.DictWriter(fh, fieldnames=[*COLUMNS, *extras], restval="")
            writer.writeheader()
            writer.writerows(rows)
        else:
            for row in rows:
                fh.write(json.dumps({k: v for k, v in row.items() if v != ""}) + "\n")
    tmp.replace(path)
    return path


def resolve_path(path: str, root: str | Path) -> Path:
    """A manifest path made usable: absolute paths stay, relative ones join ``root``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(root) / p
