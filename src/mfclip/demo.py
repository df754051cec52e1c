"""``mfclip demo``: what ``make demo`` runs, offline on the built-in tiny backbone.

This first version walks through the model (build, one training step, inference, save and
reload); indexing, training, evaluation and detection join it as those parts land.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run_demo"]


def run_demo(out_dir: Path, seed: int = 0) -> Path:
    """Build the tiny model, take one optimiser step, predict, save and reload; return the dir."""
    import torch

    from .factory import create_model
    from .model.mfclip import MFCLIP

    torch.manual_seed(seed)
    model = create_model("mfclip-tiny")
    counts = model.param_counts()
    print(f"1. built mfclip-tiny: {counts['total'] / 1e6:.2f} M parameters (random init, offline)")

    gen = torch.Generator().manual_seed(seed)
    images = model.normalize(torch.rand(4, 3, 224, 224, generator=gen))
    labels = torch.tensor([0, 1, 1, 0])
    tokens = model.build_prompts(
        ["real", "fake", "fake", "real"],
        [None, "entire_synthesis", "face_swap", None],
        [None, "diffusion", "gan", None],
        [None, "DDPM", "FaceSwapper", None],
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-3)
    model.train()
    loss = model.loss(model(images, tokens), labels)
    loss.total.backward()
    optimizer.step()
    terms = ", ".join(f"{k}={v:.3f}" for k, v in loss.as_dict().items())
    print(f"2. one training step on 4 synthetic images with L1-L4 prompts: {terms}")

    pred = model.predict(images)
    for i, (p, box) in enumerate(zip(pred.fake_prob.tolist(), pred.boxes.tolist(), strict=True)):
        print(f"   image {i}: p(fake)={p:.3f}, richest patch (x0, y0, x1, y1)={tuple(box)}")

    saved = model.save_pretrained(out_dir / "model")
    again = MFCLIP.from_pretrained(saved)
    same = torch.equal(again.predict(images).fake_prob, pred.fake_prob)
    print(f"3. saved to {saved} and reloaded: identical predictions = {same}")
    print(
        "\nThe demo data here is random noise: the numbers say nothing about forgery detection.\n"
        "Next: `mfclip model info mfclip-tiny`, `mfclip config show mfclip-vit-b16`, and\n"
        "docs/model.md for real CLIP weights. Indexing, training, evaluation and detection\n"
        "join this demo as they land."
    )
    return saved


def _demo(args: argparse.Namespace) -> int:
    run_demo(Path(args.out), args.seed)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="offline walk-through on the built-in tiny backbone")
    p.add_argument("--out", default="demo-output", help="where to write the demo's files")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)
