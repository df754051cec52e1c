"""Test set-up: offline hub, a private cache for built-in backbones, small shared fixtures."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: any hidden download must fail loudly.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Built-in backbones are materialised in a per-session cache, never the user's."""
    os.environ["MFCLIP_CACHE"] = str(tmp_path_factory.mktemp("mfclip-cache"))


@pytest.fixture()
def tiny_model():
    """A fresh tiny MFCLIP (random init) in eval mode, seeded for reproducibility."""
    import mfclip

    torch.manual_seed(0)
    return mfclip.create_model("mfclip-tiny").eval()


def random_batch(model, batch: int = 4, seed: int = 0):
    """Random images in [0, 1], labels and prompt tokens for ``model``."""
    gen = torch.Generator().manual_seed(seed)
    size = model.config.preprocess.image_size
    images01 = torch.rand(batch, 3, size, size, generator=gen)
    labels = torch.tensor([i % 2 for i in range(batch)])
    generators = ["DDPM", "StyleGAN3", "DiffFace", "LatentDiffusion"]
    gens = [generators[i % len(generators)] for i in range(batch)]
    families = ["diffusion" if g != "StyleGAN3" else "gan" for g in gens]
    types_ = ["entire_synthesis" if g != "DiffFace" else "face_swap" for g in gens]
    tokens = model.build_prompts(
        ["fake" if y else "real" for y in labels.tolist()], types_, families, gens
    )
    return images01, labels, tokens
