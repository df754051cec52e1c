"""Losses against independent float64 computations and the released formula."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mfclip.config import LossConfig
from mfclip.model.losses import MFCLIPLoss, contrastive_loss, distillation_loss
from mfclip.model.mfclip import MFCLIPOutput


def _np_ce(logits: np.ndarray, target: np.ndarray) -> float:
    shifted = logits - logits.max(1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return float(-logp[np.arange(len(target)), target].mean())


def test_contrastive_matches_numpy():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(6, 6)) * 5
    ours = contrastive_loss(torch.tensor(s), torch.tensor(s.T)).item()
    expected = (_np_ce(s, np.arange(6)) + _np_ce(s.T, np.arange(6))) / 2
    assert math.isclose(ours, expected, rel_tol=1e-12)


def test_kd_matches_float64_kl():
    rng = np.random.default_rng(1)
    pred, teacher, t = rng.normal(size=(5, 16)), rng.normal(size=(5, 16)) * 3, 20.0

    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p, q = softmax(teacher / t), softmax(pred / t)
    expected = float((p * (np.log(p) - np.log(q))).sum(1).mean())
    ours = distillation_loss(torch.tensor(pred), torch.tensor(teacher), t, False).item()
    assert math.isclose(ours, expected, rel_tol=1e-5)


def test_default_weights_equal_released_objective_up_to_a_constant():
    """Released: cmc + KLDiv(log_softmax(p/T), softmax(t/T)*a*T^2) + (1-a)*CE + CE."""
    torch.manual_seed(0)
    b, d, t, a = 6, 32, 20.0, 0.5
    out = MFCLIPOutput(
        logits=torch.randn(b, 2, dtype=torch.float64),
        visual_features=torch.randn(b, d, dtype=torch.float64),
        text_features=torch.randn(b, d, dtype=torch.float64),
        predicted_text=torch.randn(b, d, dtype=torch.float64),
        logits_per_image=torch.randn(b, b, dtype=torch.float64),
    )
    out.logits_per_text = out.logits_per_image.t()
    labels = torch.randint(0, 2, (b,))
    idx = torch.arange(b)
    released = (
        (F.cross_entropy(out.logits_per_image, idx) + F.cross_entropy(out.logits_per_text, idx)) / 2
        + nn.KLDivLoss(reduction="batchmean")(
            F.log_softmax(out.predicted_text / t, dim=1),
            F.softmax(out.text_features / t, dim=1) * a * t * t,
        )
        + F.cross_entropy(out.logits, labels) * (1 - a)
        + F.cross_entropy(out.logits, labels)
    )
    ours = MFCLIPLoss(LossConfig())(out, labels).total
    assert math.isclose(
        ours.item() + a * t * t * math.log(a * t * t), released.item(), rel_tol=1e-5
    )


def test_zero_weight_terms_are_skipped():
    out = MFCLIPOutput(logits=torch.randn(3, 2), visual_features=torch.randn(3, 4))
    loss = MFCLIPLoss(LossConfig(cmc=0, kd=0, ce=1))(out, torch.tensor([0, 1, 1]))
    assert loss.cmc.item() == 0 and loss.kd.item() == 0
    assert math.isclose(
        loss.total.item(), F.cross_entropy(out.logits, torch.tensor([0, 1, 1])).item()
    )
