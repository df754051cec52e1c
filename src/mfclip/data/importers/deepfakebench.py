"""``deepfakebench`` layout: DeepfakeBench's per-dataset JSON files.

Each JSON file is ``{dataset: {label_name: {split: {compression: {video: {"label": ...,
"frames": [paths]}}}}}}``; the compression level is absent for some datasets. Frame paths are
resolved against ROOT (the folder DeepfakeBench calls ``rgb``); paths written on another
machine are matched by their longest suffix that exists under ROOT. Frames the JSON names but
the disk lacks are left out and reported.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..generators import describe_generator
from ..records import Record, normalize_split
from .base import ImportResult

__all__ = ["import_deepfakebench", "label_is_real"]

FF_NAMES = {
    "df": "Deepfakes",
    "f2f": "Face2Face",
    "fs": "FaceSwap",
    "nt": "NeuralTextures",
    "fh": "FaceShifter",
    "fsh": "FaceShifter",
}
REAL_WORDS = {"real", "youtube", "original", "pristine", "actors"}


def label_is_real(label_name: str) -> bool:
    """DeepfakeBench label names: ``FF-real``, ``CelebDFv2_real``, ``DFDC_Real`` ... are real."""
    return bool(set(re.split(r"[-_\s]+", label_name.lower())) & REAL_WORDS)


def _generator(dataset: str, label_name: str) -> str:
    tokens = [
        t for t in re.split(r"[-_\s]+", label_name) if t and t.lower() not in {"fake", "real"}
    ]
    if len(tokens) == 2 and tokens[0].lower() == "ff" and tokens[1].lower() in FF_NAMES:
        return FF_NAMES[tokens[1].lower()]
    return "_".join(tokens) or dataset


class _Resolver:
    """Finds a frame path on disk, remembering how many leading components to strip."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.strip: int | None = None

    def __call__(self, frame: str) -> Path | None:
        path = Path(frame.replace("\\", "/"))
        if path.is_absolute() and path.is_file():
            return path
        parts = path.parts[1:] if path.is_absolute() else path.parts
        order = list(range(len(parts)))
        if self.strip is not None and self.strip < len(parts):
            order.insert(0, self.strip)
        for k in order:
            candidate = self.root.joinpath(*parts[k:])
            if candidate.is_file():
                self.strip = k
                return candidate
        return None


def _videos(node: dict[str, Any], compression: str, where: str, warnings: list[str]) -> dict:
    """The ``{video: info}`` mapping of one split, choosing the compression level if present."""
    if not node or any(isinstance(v, dict) and "frames" in v for v in node.values()):
        return node
    if compression in node:
        return node[compression]
    if len(node) == 1:
        return next(iter(node.values()))
    chosen = sorted(node)[0]
    warnings.append(
        f"{where}: no compression '{compression}' (has {', '.join(sorted(node))}); using {chosen}"
    )
    return node[chosen]


def _json_files(root: Path) -> list[Path]:
    files = sorted(root.glob("*.json")) + sorted(root.glob("*/*.json"))
    if not files:
        raise ValueError(f"{root}: no DeepfakeBench JSON files found; pass them with --json")
    return files


def import_deepfakebench(
    root: str | Path,
    json_files: list[str | Path] | None = None,
    compression: str = "c23",
) -> ImportResult:
    """Index frames named by DeepfakeBench JSON files (one group per video, official splits)."""
    root = Path(root)
    result = ImportResult(official_splits=True)
    resolve = _Resolver(root)
    missing: list[str] = []
    for json_file in [Path(p) for p in json_files] if json_files else _json_files(root):
        try:
            data = json.loads(json_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{json_file}: cannot read DeepfakeBench JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{json_file}: expected {{dataset: {{label: {{split: ...}}}}}}")
        for dataset, labels in data.items():
            for label_name, splits in (labels or {}).items():
                real = label_is_real(label_name)
                generator = dataset if real else _generator(dataset, label_name)
                ftype, family = ("", "") if real else describe_generator(generator)
                for split, node in (splits or {}).items():
                    where = f"{json_file.name}: {dataset}/{label_name}/{split}"
                    for video, info in _videos(
                        node or {}, compression, where, result.warnings
                    ).items():
                        frames = info.get("frames", []) if isinstance(info, dict) else []
                        if not frames:
                            result.warnings.append(f"{where}/{video}: no frames listed")
                        for frame in frames:
                            path = resolve(str(frame))
                            if path is None:
                                missing.append(str(frame))
                                continue
                            result.records.append(
                                Record(
                                    path=str(path),
                                    label="real" if real else "fake",
                                    forgery_type=ftype,
                                    family=family,
                                    generator=generator,
                                    split=normalize_split(split),
                                    group=f"{dataset}/{label_name}/{video}",
                                    extra={"dataset": dataset},
                                )
                            )
    if missing:
        shown = ", ".join(missing[:5])
        result.warnings.append(
            f"{len(missing)} frame(s) named in the JSON are missing on disk under {root} "
            f"(e.g. {shown})"
        )
    return result
