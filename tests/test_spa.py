"""SPA: content-based negative weights, permutation equivariance, any batch size."""

from __future__ import annotations

import math

import pytest
import torch

from mfclip.config import SPAConfig
from mfclip.model.spa import SamplePairAttention


def _tokens(groups: list[tuple[int, ...]], length: int = 5) -> torch.Tensor:
    """Prompt tokens where each level's content is given by an integer id."""
    return torch.tensor([[[lv] * length for lv in g] for g in groups])


REAL = (0, 0, 0, 0)
DDPM = (1, 2, 3, 4)
LDM = (1, 2, 3, 5)
SWAP = (1, 6, 3, 7)


def test_weights_follow_content():
    spa = SamplePairAttention(SPAConfig())
    tokens = _tokens([REAL, DDPM, LDM, SWAP, REAL, DDPM])
    bias = spa.log_weights(tokens)
    assert torch.all(bias.diagonal() == 0)
    assert bias[0, 4] == float("-inf") and bias[1, 5] == float("-inf")  # identical prompts
    assert bias[0, 1] == pytest.approx(math.log(2.0))  # opposite labels emphasised
    assert bias[1, 2] == pytest.approx(2 * math.log(0.5))  # share L1-L3
    assert bias[1, 3] == pytest.approx(1 * math.log(0.5))  # share L1, L3
    assert torch.equal(bias, bias.t())


def test_permutation_equivariance():
    torch.manual_seed(0)
    spa = SamplePairAttention(SPAConfig())
    tokens = _tokens([REAL, DDPM, LDM, SWAP, REAL, DDPM, LDM])
    logits = torch.randn(7, 7)
    perm = torch.randperm(7)
    out = spa(logits, tokens)
    out_perm = spa(logits[perm][:, perm], tokens[perm])
    assert torch.equal(out_perm, out[perm][:, perm])


@pytest.mark.parametrize("batch", [1, 2, 3, 24, 40])
def test_any_batch_size_and_finite_loss(batch):
    spa = SamplePairAttention(SPAConfig())
    tokens = _tokens([REAL] * batch)  # every negative is a false negative
    logits = torch.randn(batch, batch, requires_grad=True)
    out = spa(logits, tokens)
    target = torch.arange(batch)
    loss = torch.nn.functional.cross_entropy(out, target)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(logits.grad).all()


def test_static_mode_reproduces_released_gate():
    spa = SamplePairAttention(SPAConfig(mode="static", static_init=0.0))
    logits = torch.randn(24, 24)
    assert torch.allclose(spa(logits), logits * 0.5)
    assert torch.allclose(spa(logits[:5, :5]), logits[:5, :5] * 0.5)
    with pytest.raises(ValueError, match="at most 24"):
        spa(torch.randn(25, 25))


def test_off_mode_is_identity():
    spa = SamplePairAttention(SPAConfig(mode="off"))
    logits = torch.randn(3, 3)
    assert torch.equal(spa(logits, _tokens([REAL, DDPM, LDM])), logits)
