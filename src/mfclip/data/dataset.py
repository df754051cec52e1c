"""A ``torch`` Dataset over a manifest: images, labels, prompt ids/tokens, groups, paths.

A file that fails to decode never stops an epoch: ``__getitem__`` returns a :class:`BadItem`,
the failure is counted (shared across DataLoader workers) and logged with its path, and
:func:`collate` drops it from the batch.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..preprocess.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, load_image
from ..prompts import PromptBuilder
from .manifest import read_manifest, resolve_path
from .records import Record
from .sbi import SBI_LABELS, SelfBlend
from .transforms import build_eval_transform

__all__ = ["BadItem", "ManifestDataset", "collate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BadItem:
    """Marker returned for a sample whose file could not be used."""

    index: int
    path: str
    reason: str


class ManifestDataset(Dataset):
    """Samples of a manifest (path, or already-read records).

    Relative paths resolve against the manifest's folder (or ``root``). Rows marked unusable
    by the face cropper (``status`` other than ``ok``) are left out. ``prompt_ids`` index
    :attr:`prompt_table`; ``tokens`` are the same prompts tokenised to ``context_length``.
    A non-empty ``prompt`` column replaces the built prompt at every level.
    """

    def __init__(
        self,
        manifest: str | Path | Sequence[Record],
        transform: Callable[..., torch.Tensor] | None = None,
        prompt_builder: PromptBuilder | None = None,
        tokenizer: Any = None,
        levels: Sequence[int] = (1, 2, 3, 4),
        context_length: int = 77,
        split: str | Sequence[str] | None = None,
        root: str | Path | None = None,
        seed: int | None = None,
        self_blend: SelfBlend | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        if isinstance(manifest, (str, Path)):
            records = read_manifest(manifest)
            default_root = Path(manifest).parent
        else:
            records, default_root = list(manifest), Path(".")
        self.root = Path(root) if root is not None else default_root
        if split is not None:
            wanted = {split} if isinstance(split, str) else set(split)
            records = [r for r in records if r.split in wanted]
        unusable = [r for r in records if r.status != "ok"]
        if unusable:
            log.info("leaving out %d row(s) marked unusable (e.g. no face found)", len(unusable))
        self.records = [r for r in records if r.status == "ok"]
        if not self.records:
            raise ValueError(
                f"no usable rows in the manifest{f' for split {split}' if split else ''}"
            )
        self.transform = transform or build_eval_transform()
        self.levels = tuple(levels)
        self.context_length = context_length
        self.seed = seed
        self.self_blend = self_blend
        self.max_pixels = max_pixels
        self.epoch = 0
        self._build_prompts(prompt_builder or PromptBuilder())
        self.prompt_tokens = self._tokenize(tokenizer) if tokenizer is not None else None
        self._bad = multiprocessing.Value("i", 0)

    def _build_prompts(self, builder: PromptBuilder) -> None:
        table: dict[str, int] = {}

        def ids(texts: list[str]) -> list[int]:
            return [table.setdefault(t, len(table)) for t in texts]

        rows = []
        for r in self.records:
            texts = (
                [r.prompt] * len(self.levels)
                if r.prompt
                else builder.build(r.label, r.forgery_type, r.family, r.generator, self.levels)
            )
            rows.append(ids(texts))
        self.prompt_ids = torch.tensor(rows, dtype=torch.long)
        self.sbi_prompt_ids = torch.tensor(
            ids(builder.build("fake", levels=self.levels, **SBI_LABELS)), dtype=torch.long
        )
        self.prompt_table = list(table)

    def _tokenize(self, tokenizer: Any) -> torch.Tensor:
        encoded = tokenizer(
            self.prompt_table,
            padding="max_length",
            truncation=True,
            max_length=self.context_length,
            return_tensors="pt",
        )
        tokens = torch.as_tensor(encoded["input_ids"], dtype=torch.long)
        if tokens.shape != (len(self.prompt_table), self.context_length):
            raise ValueError(
                f"tokenizer returned shape {tuple(tokens.shape)}, expected "
                f"({len(self.prompt_table)}, {self.context_length})"
            )
        return tokens

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> list[int]:
        return [r.target for r in self.records]

    @property
    def bad_count(self) -> int:
        """Files that failed to decode so far (all DataLoader workers together)."""
        return int(self._bad.value)

    def set_epoch(self, epoch: int) -> None:
        """Vary the seeded augmentations per epoch (call before each epoch)."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([self.seed, self.epoch, index])

    def _bad_item(self, index: int, path: Path, reason: str) -> BadItem:
        with self._bad.get_lock():
            self._bad.value += 1
        log.warning("skipping unreadable file %s: %s", path, reason)
        return BadItem(index, str(path), reason)

    def __getitem__(self, index: int) -> dict[str, Any] | BadItem:
        record = self.records[index]
        path = resolve_path(record.path, self.root)
        rng = self._rng(index)
        try:
            image = load_image(path, max_pixels=self.max_pixels)
        except ImageDecodeError as exc:
            return self._bad_item(index, path, exc.reason)
        label, prompt_ids = record.target, self.prompt_ids[index]
        generator, forgery_type = record.generator, record.forgery_type
        if self.self_blend is not None and label == 0 and rng.random() < self.self_blend.p:
            image = self.self_blend(image, rng)
            label, prompt_ids = 1, self.sbi_prompt_ids
            generator, forgery_type = SBI_LABELS["generator"], SBI_LABELS["forgery_type"]
        try:
            if getattr(self.transform, "uses_rng", False):
                tensor = self.transform(image, rng=rng)
            else:
                tensor = self.transform(image)
        except (OSError, ValueError) as exc:
            return self._bad_item(index, path, f"transform failed: {exc}")
        item: dict[str, Any] = {
            "image": tensor,
            "label": label,
            "prompt_ids": prompt_ids.clone(),
            "group": record.group or record.path,
            "path": str(path),
            "generator": generator,
            "forgery_type": forgery_type,
            "index": index,
        }
        if self.prompt_tokens is not None:
            item["tokens"] = self.prompt_tokens[prompt_ids]
        return item


def collate(items: Sequence[dict[str, Any] | BadItem]) -> dict[str, Any] | None:
    """Stack tensors, turn ints into tensors, keep strings as lists; drop :class:`BadItem`.

    The dropped paths are listed under ``"skipped"``. Returns ``None`` when every item of the
    batch failed, so a training loop can ``continue``.
    """
    good = [item for item in items if not isinstance(item, BadItem)]
    skipped = [item.path for item in items if isinstance(item, BadItem)]
    if not good:
        return None
    batch: dict[str, Any] = {}
    for key in good[0]:
        values = [item[key] for item in good]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], (bool, int, np.integer)):
            batch[key] = torch.tensor([int(v) for v in values], dtype=torch.long)
        elif isinstance(values[0], float):
            batch[key] = torch.tensor(values, dtype=torch.float32)
        else:
            batch[key] = values
    batch["skipped"] = skipped
    return batch
