"""Results files of ``mfclip detect``: CSV or JSONL rows written as they come, and resumed.

Rows are written in input order and each line is flushed as it is written, so a killed run
leaves a file whose complete rows are a prefix of the full output, at worst followed by a
truncated line. :func:`resume_results` keeps that prefix (checking it against the inputs),
drops the rest, and says how many inputs to skip: the resumed file then equals an
uninterrupted one, with memory independent of the number of rows.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import MFCLIPError

__all__ = ["FIELDS", "ResultsWriter", "ResumeError", "resume_results"]

FIELDS = ["source", "kind", "frame", "frames", "fake_prob", "label", "threshold", "face_box",
          "patch_box", "error", "raw_prob", "reason"]  # fmt: skip


class ResumeError(MFCLIPError, ValueError):
    """An existing results file cannot be continued with these inputs."""


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6f}"
    # One physical line per row, so a truncated row is always the last line.
    return " ".join(str(value).splitlines())


def is_jsonl(path: Path | None) -> bool:
    return path is not None and path.suffix == ".jsonl"


class ResultsWriter:
    """Rows to ``path`` (``.jsonl``: JSON lines; otherwise CSV) or CSV on stdout.

    Line-buffered: every row reaches the file when it is written. ``append`` continues a
    resumed file (no second CSV header).
    """

    def __init__(self, path: Path | None, append: bool = False) -> None:
        self.path = path
        self.as_json = is_jsonl(path)
        self.sink: IO[str] = (
            path.open("a" if append else "w", newline="", buffering=1) if path else sys.stdout
        )
        self.csv = None if self.as_json else csv.DictWriter(self.sink, fieldnames=FIELDS)
        if self.csv is not None and (not append or self.sink.tell() == 0):
            self.csv.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        if self.csv is None:
            self.sink.write(json.dumps({k: row[k] for k in FIELDS}) + "\n")
        else:
            self.csv.writerow({k: _cell(row[k]) for k in FIELDS})

    def flush(self) -> None:
        self.sink.flush()

    def close(self) -> None:
        if self.path is not None:
            self.sink.close()
        else:
            self.sink.flush()


def _complete_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(end offset, line)`` of each newline-terminated line; a truncated tail is left out."""
    offset = 0
    with path.open("rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                return
            offset += len(line)
            yield offset, line


def _rows(path: Path) -> Iterator[tuple[int, str, str]]:
    """``(end offset, source, kind)`` of each complete row (after the CSV header)."""
    lines = _complete_lines(path)
    if not is_jsonl(path):
        first = next(lines, None)
        if first is None:
            return
        header = next(csv.reader([first[1].decode()]))
        if header != FIELDS:
            raise ResumeError(f"{path}: not a detect results file (header {header[:3]}...)")
        yield first[0], "", "header"
    for n, (end, line) in enumerate(lines, 1):
        text = line.decode("utf-8", errors="replace")
        try:
            if is_jsonl(path):
                row = json.loads(text)
            else:
                row = next(csv.DictReader(io.StringIO(text), fieldnames=FIELDS))
            source, kind = row["source"], row["kind"] or "image"
        except (ValueError, KeyError, TypeError, StopIteration) as exc:
            raise ResumeError(f"{path}: row {n} cannot be read back ({exc})") from exc
        yield end, source, kind


def resume_results(path: Path, inputs: Iterator[str]) -> int:
    """Keep the rows of ``path`` written for the first inputs; return how many inputs they cover.

    Consumes that many items of ``inputs`` (the caller goes on with the rest), checking that
    each input's row has its source. Trailing frame rows of a video whose own row is missing,
    and a truncated last line, are cut off the file. A missing or empty file resumes at 0.
    """
    if not path.is_file():
        return 0
    keep, done = 0, 0
    for end, source, kind in _rows(path):
        if kind == "header":
            keep = end
            continue
        if kind == "frame":
            continue
        expected = next(inputs, None)
        if expected != source:
            want = "no more inputs" if expected is None else f"input {done + 1} is {expected!r}"
            raise ResumeError(
                f"{path}: row for input {done + 1} is {source!r} but {want}; it was written for "
                "other inputs (use another --out, or drop --resume to overwrite it)"
            )
        done += 1
        keep = end
    with path.open("r+b") as fh:
        fh.truncate(keep)
    return done
