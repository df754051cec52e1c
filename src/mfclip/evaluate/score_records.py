"""Score a manifest dataset into plain per-image records: the rows every report is built from.

Each record carries the calibrated ``score`` (what every path reports and every metric uses),
the ``raw_score`` (uncalibrated softmax) and the raw logit ``margin``, so calibration can be
measured before and after, and refitted, from the same pass over the images.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

from ..data.dataset import ManifestDataset, collate
from ..inference.scoring import Scorer
from ..model.mfclip import MFCLIP

__all__ = ["score_dataset"]


def score_dataset(
    model: MFCLIP,
    dataset: ManifestDataset,
    batch_size: int = 64,
    num_workers: int = 2,
    features: bool = False,
    progress: bool = True,
    desc: str = "scoring",
) -> list[dict[str, Any]]:
    """One record per readable sample.

    Keys: path, group, label, score (calibrated p(fake)), raw_score, margin, generator (for
    reals: their source, ``real`` when unnamed), forgery_type, and ``feature`` with
    ``features``. Unreadable files are skipped (and counted in ``dataset.bad_count``).
    """
    from tqdm.auto import tqdm

    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    scorer = Scorer(model, features=features)
    batches = tqdm(loader, desc=desc, disable=not progress, unit="batch", leave=False)
    records: list[dict[str, Any]] = []
    for batch, scores in scorer.batches(batches):
        probs = scores.fake_prob.numpy()
        raw = scores.raw_prob.numpy()
        margins = scores.margin.numpy()
        feats = scores.features.numpy() if scores.features is not None else None
        for i, path in enumerate(batch["path"]):
            row = {
                "path": path,
                "group": batch["group"][i],
                "label": int(batch["label"][i]),
                "score": float(probs[i]),
                "raw_score": float(raw[i]),
                "margin": float(margins[i]),
                "generator": batch["generator"][i] or "real",
                "forgery_type": batch["forgery_type"][i] or "real",
            }
            if feats is not None:
                row["feature"] = feats[i]
            records.append(row)
    return records
