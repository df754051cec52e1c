"""A tiny folders-layout dataset and protocol for protocol tests: 24 reals, two generators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_tree(root: Path) -> None:
    """``real/`` noise images and ``fake/genA``, ``fake/genB`` blocky ones, 48 px PNGs."""
    rng = np.random.default_rng(0)
    for folder, n, blocky in (
        ("real", 24, False),
        ("fake/genA", 12, True),
        ("fake/genB", 12, True),
    ):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 255, (12, 12, 3) if blocky else (48, 48, 3)).astype(np.uint8)
            Image.fromarray(img).resize((48, 48), Image.NEAREST).save(root / folder / f"{i}.png")


def write_protocol(path: Path, name: str) -> Path:
    """Train on genA (1 epoch, tiny backbone); test on genA and on genB, never seen in training."""
    path.write_text(
        f"name: {name}\n"
        "datasets: {d: {layout: folders, ratios: [0.5, 0.25, 0.25]}}\n"
        "training:\n"
        "  model: {preset: mfclip-tiny}\n"
        "  data: {batch_size: 8, num_workers: 0}\n"
        "  epochs: 1\n"
        "  tensorboard: false\n"
        "experiments:\n"
        "  - train: {name: genA, fake: {generator: [genA]}}\n"
        "    test:\n"
        "      - {name: genA, fake: {generator: [genA]}}\n"
        "      - {name: genB, fake: {generator: [genB]}, splits: {fake: [train, val, test]}}\n"
    )
    return path
