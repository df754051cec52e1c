"""One manifest row: the unit every importer produces and every consumer reads.

Kept free of I/O so importers, the loader and the face cropper share a single definition of
what a sample is (and of what ``label`` may be spelled as).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..prompts import PromptBuilder, PromptError

__all__ = ["COLUMNS", "SPLITS", "Record", "normalize_label", "normalize_split"]

#: Manifest columns in file order; any other column is kept in :attr:`Record.extra`.
COLUMNS = ("path", "label", "forgery_type", "family", "generator", "split", "group", "prompt")
SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test", "eval": "test",
}  # fmt: skip


def normalize_label(value: Any) -> str:
    """``real`` or ``fake`` from any accepted spelling (``0``/``1``, ``pristine``, ...)."""
    try:
        return "fake" if PromptBuilder.is_fake(value) else "real"
    except PromptError as exc:
        raise ValueError(str(exc)) from None


def normalize_split(value: Any) -> str:
    """Canonical split name (``train``/``val``/``test``); other names pass through lower-cased."""
    text = str(value or "").strip().lower()
    return _SPLIT_ALIASES.get(text, text)


@dataclass
class Record:
    """A manifest row. ``label`` is always ``real`` or ``fake`` after construction.

    For real images ``generator`` names the source (``FFHQ``, ``youtube``) so that summaries
    and cross-dataset protocols can still tell sources apart.
    """

    path: str
    label: str
    forgery_type: str = ""
    family: str = ""
    generator: str = ""
    split: str = ""
    group: str = ""
    prompt: str = ""
    #: Columns outside :data:`COLUMNS` (e.g. ``status``/``reason`` written by ``data faces``).
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.label = normalize_label(self.label)
        self.split = normalize_split(self.split)
        for name in COLUMNS[2:]:
            value = getattr(self, name)
            setattr(self, name, "" if value is None else str(value).strip())

    @property
    def is_fake(self) -> bool:
        return self.label == "fake"

    @property
    def target(self) -> int:
        """Integer class: 0 real, 1 fake."""
        return int(self.is_fake)

    @property
    def status(self) -> str:
        """``ok`` unless a producer (face cropping) marked the row as unusable."""
        return self.extra.get("status", "") or "ok"

    def to_row(self) -> dict[str, str]:
        row = {name: str(getattr(self, name)) for name in COLUMNS}
        row.update(self.extra)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Record:
        """Build from a mapping with at least ``path`` and ``label``; extras are preserved."""
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in row.items() if k in names}
        extra = {k: "" if v is None else str(v) for k, v in row.items() if k not in names}
        return cls(**known, extra=extra)

    def with_(self, **changes: Any) -> Record:
        """A modified copy (extras copied, not shared)."""
        changes.setdefault("extra", dict(self.extra))
        return replace(self, **changes)
