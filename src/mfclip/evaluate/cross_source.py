"""Cross-source AUC: does the detector separate fakes from *every* kind of real photo?

A pool of reals from several sources (FFHQ, CelebA-HQ, a phone camera) can hide a source the
model confuses with fakes: the pooled AUC averages it away. A manifest names a real image's
source in the ``generator`` column of real rows; this table scores each source on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .grouping import to_columns
from .operating import rates_at
from .ranking import roc_auc
from .validation import check_binary

__all__ = ["DEFINITION", "cross_source_auc"]

DEFINITION = (
    "Per real source: AUC of that source's real images against all fake images (every "
    "generator), and FPR@thr, the share of that source's reals flagged at the stored "
    "threshold. Per pair: AUC of that source's reals against one generator's fakes."
)


def cross_source_auc(
    records: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]],
    threshold: float | None = None,
) -> dict[str, Any] | None:
    """The cross-source table, or ``None`` unless the reals come from two or more sources.

    ``records`` need ``label``, ``score`` and ``generator`` (a real row's source).
    """
    cols = to_columns(records)
    y, s = check_binary(cols["label"], cols["score"])
    source = np.array([str(v) for v in cols["generator"]], dtype=object)
    sources = sorted(set(source[y == 0]))
    generators = sorted(set(source[y == 1]))
    if len(sources) < 2 or not generators:
        return None
    fake = y == 1
    by_source: dict[str, dict[str, Any]] = {}
    pairs: dict[str, dict[str, float]] = {}
    for name in sources:
        reals = (y == 0) & (source == name)
        pooled = reals | fake
        row: dict[str, Any] = {"n_real": int(reals.sum()), "auc": roc_auc(y[pooled], s[pooled])}
        if threshold is not None:
            row["fpr@thr"] = rates_at(y[reals], s[reals], threshold)[0]
        by_source[name] = row
        pairs[name] = {}
        for gen in generators:
            pair = reals | (fake & (source == gen))
            pairs[name][gen] = roc_auc(y[pair], s[pair])
    return {
        "definition": DEFINITION,
        "generators": {gen: int((fake & (source == gen)).sum()) for gen in generators},
        "by_source": by_source,
        "pairs": pairs,
    }
