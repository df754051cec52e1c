"""Deterministic, leak-free split assignment by group (video or identity).

A split is a pure function of the group's name, so re-indexing a grown dataset never moves an
existing group to another split, and no identity or video can end up on both sides.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

from .records import SPLITS, Record

__all__ = ["DEFAULT_RATIOS", "assign_splits", "group_leaks", "parse_ratios", "split_of"]

DEFAULT_RATIOS = (0.8, 0.1, 0.1)


def parse_ratios(text: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` (or a sequence) -> normalised train/val/test fractions."""
    values = [float(v) for v in text.split(",")] if isinstance(text, str) else list(text)
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0:
        raise ValueError(f"split ratios must be three non-negative numbers, got {text!r}")
    total = sum(values)
    return (values[0] / total, values[1] / total, values[2] / total)


def _unit(text: str) -> float:
    digest = hashlib.sha1(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(group: str, ratios: Sequence[float] = DEFAULT_RATIOS, salt: str = "") -> str:
    """The split of one group: sha1(salt + group) mapped to [0, 1) and cut at the ratios."""
    train, val, _ = parse_ratios(ratios)
    u = _unit(f"{salt}{group}")
    if u < train:
        return SPLITS[0]
    return SPLITS[1] if u < train + val else SPLITS[2]


def assign_splits(
    records: Sequence[Record],
    ratios: Sequence[float] = DEFAULT_RATIOS,
    salt: str = "",
    overwrite: bool = False,
) -> list[Record]:
    """Copies of ``records`` with a split for every row lacking one (all rows if ``overwrite``).

    Rows without a group are their own group (keyed by path).
    """
    out = []
    for record in records:
        if record.split and not overwrite:
            out.append(record)
            continue
        out.append(record.with_(split=split_of(record.group or record.path, ratios, salt)))
    return out


def group_leaks(records: Sequence[Record]) -> dict[str, list[str]]:
    """Groups present in more than one split (a leak between training and evaluation)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record.group:
            seen[record.group].add(record.split)
    return {g: sorted(s) for g, s in seen.items() if len(s) > 1}
