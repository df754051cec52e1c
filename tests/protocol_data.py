"""A tiny folders-layout dataset for protocol tests: 24 reals and two 12-image generators."""

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
