"""Score a manifest dataset into plain per-image records: the rows every report is built from.

Each record carries the calibrated ``score`` (what every path reports and every metric uses),
the ``raw_score`` (uncalibrated softmax) and the raw logit ``margin``, so calibration can be
measured before and after, and refitted, from the same pass over the images.

Under ``torchrun`` each rank scores a strided shard of the dataset (no sample twice, none
padded) and every rank gets all the records back in dataset order, so every number computed
from them equals a one-process run's.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader, Subset

from ..data.dataset import ManifestDataset, collate
from ..distributed import DistEnv, shard_indices
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
    env: DistEnv | None = None,
) -> list[dict[str, Any]]:
    """One record per readable sample.

    Keys: path, group, label, score (calibrated p(fake)), raw_score, margin, generator (for
    reals: their source, ``real`` when unnamed), forgery_type, and ``feature`` with
    ``features``. Unreadable files are skipped (and counted in ``dataset.bad_count``, on the
    rank that met them). With a distributed ``env`` every rank must call it; the progress bar
    is rank 0's.
    """
    from tqdm.auto import tqdm

    env = env or DistEnv()
    shard = Subset(dataset, shard_indices(len(dataset), env.rank, env.world_size))
    loader = DataLoader(shard, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    scorer = Scorer(model, features=features)
    quiet = not progress or not env.is_main
    batches = tqdm(loader, desc=desc, disable=quiet, unit="batch", leave=False)
    records: list[tuple[int, dict[str, Any]]] = []
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
            records.append((int(batch["index"][i]), row))
    if not env.distributed:
        return [row for _, row in records]
    merged = [item for part in env.gather_objects(records) for item in part]
    return [row for _, row in sorted(merged, key=lambda item: item[0])]
