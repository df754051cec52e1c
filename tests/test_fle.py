"""FLE: every prompt level changes the language feature; identical prompts encoded once."""

from __future__ import annotations

import pytest
import torch

import mfclip
from mfclip.model.fle import encode_unique

BASE = ["fake", "entire_synthesis", "diffusion", "DDPM"]


def _tokens(model, rows):
    return model.build_prompts(
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]
    )


@pytest.mark.parametrize(
    "changed",
    [
        ["fake", "face_swap", "diffusion", "DDPM"],  # L2 only
        ["fake", "entire_synthesis", "gan", "DDPM"],  # L3 only
        ["fake", "entire_synthesis", "diffusion", "LatentDiffusion"],  # L4 only
    ],
)
def test_each_level_changes_the_feature(tiny_model, changed):
    tokens = _tokens(tiny_model, [BASE, changed])
    differing = [lv for lv in range(4) if not torch.equal(tokens[0, lv], tokens[1, lv])]
    assert len(differing) == 1
    with torch.no_grad():
        feats = tiny_model.text(tokens)
    assert not torch.allclose(feats[0], feats[1], atol=1e-6)


def test_gradients_reach_every_level(tiny_model):
    fle = tiny_model.text
    tokens = _tokens(tiny_model, [BASE, ["real", None, None, None]])
    levels = fle.encode_levels(tokens)
    levels.retain_grad()
    fle.fusion(levels).pow(2).sum().backward()
    per_level = levels.grad.abs().sum(dim=(0, 2))
    assert torch.all(per_level > 0)
    assert fle.fusion.level_logits.grad.abs().sum() > 0
    # A token that only occurs in L4 ("ddpm") receives a gradient through the token table.
    emb_grad = fle.tower.text_model.embeddings.token_embedding.weight.grad
    l4_only = (
        set(tokens[0, 3].tolist())
        - set(tokens[0, :3].flatten().tolist())
        - set(tokens[1].flatten().tolist())
    )
    assert l4_only and all(emb_grad[t].abs().sum() > 0 for t in l4_only)


def test_concat_mode_reproduces_released_defect():
    """Released: 308-token causal concatenation pooled at L1's end, so L2-L4 cannot matter."""
    torch.manual_seed(0)
    model = mfclip.create_model("mfclip-tiny", overrides=["fle.mode=concat"]).eval()
    tokens = _tokens(
        model, [BASE, ["fake", "face_swap", "gan", "StyleGAN3"], ["real", None, None, None]]
    )
    with torch.no_grad():
        feats = model.text(tokens)
    assert torch.allclose(feats[0], feats[1], atol=1e-6)
    assert not torch.allclose(feats[0], feats[2], atol=1e-4)
    assert model.text.concat_positions.shape[0] == 4 * 77


def test_identical_prompts_are_encoded_once(tiny_model):
    tower = tiny_model.text.tower
    calls = []
    handle = tower.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    rows = [BASE] * 5 + [["real", None, None, None]] * 5
    tokens = _tokens(tiny_model, rows)
    with torch.no_grad():
        fused = tiny_model.text(tokens)
        handle.remove()
        direct = tiny_model.text.fusion(tower(tokens.view(-1, 77)).view(10, 4, -1))
    # BASE has 4 distinct levels, real prompts are one repeated prompt: 5 distinct rows.
    assert calls == [5]
    assert torch.allclose(fused, direct, atol=1e-5)


def test_encode_unique_preserves_order():
    rows = torch.tensor([[3, 1], [0, 0], [3, 1], [2, 2]])
    out = encode_unique(lambda x: x.float() * 10, rows)
    assert torch.equal(out, rows.float() * 10)


def test_l1_only_ablation_and_shape_errors(tiny_model):
    model = mfclip.create_model("mfclip-tiny", overrides=["fle.levels=[1]"]).eval()
    tokens = model.build_prompts(["real", "fake"])
    assert tokens.shape == (2, 1, 77)
    with torch.no_grad():
        assert model.text(tokens).shape == (2, model.text.out_dim)
    with pytest.raises(ValueError, match=r"expected prompt tokens of shape \(B, 1, 77\)"):
        model.text(torch.zeros(2, 4, 77, dtype=torch.long))
