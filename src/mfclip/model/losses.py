"""MFCLIP's objective: L = w_cmc * L_cmc + w_kd * L_kd + w_ce * L_ce.

The default weights equal the released training script's effective objective:

``(CE(S, I) + CE(S^T, I)) / 2 + KLDiv(log_softmax(p/T), softmax(t/T) * a*T^2)
+ (1 - a) * CE(y_hat, y) + CE(y_hat, y)`` with ``T = 20`` and ``a = 0.5``, where ``S`` are the
SPA-weighted image-text logits, ``p`` the predictor output and ``t`` the (not detached) text
feature. Scaling the KL target by ``a*T^2 = 200`` equals ``200 * KL(softmax(t/T) ||
softmax(p/T)) + 200*log(200)``; the constant has no gradient and is left out here, so the
released loss *values* are ours + 1059.66 when ``kd = 200``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import LossConfig

__all__ = ["LossOutput", "MFCLIPLoss", "contrastive_loss", "distillation_loss"]


def contrastive_loss(logits_per_image: torch.Tensor, logits_per_text: torch.Tensor) -> torch.Tensor:
    """L_cmc: symmetric cross-entropy with targets on the diagonal."""
    target = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)
    return (
        F.cross_entropy(logits_per_image, target) + F.cross_entropy(logits_per_text, target)
    ) / 2


def distillation_loss(
    predicted: torch.Tensor, teacher: torch.Tensor, temperature: float, detach_teacher: bool
) -> torch.Tensor:
    """L_kd: ``KL(softmax(teacher/T) || softmax(predicted/T))`` over feature dims, batch mean."""
    if detach_teacher:
        teacher = teacher.detach()
    dtype = torch.promote_types(predicted.dtype, torch.float32)  # half precision is too coarse
    log_q = F.log_softmax(predicted.to(dtype) / temperature, dim=1)
    log_p = F.log_softmax(teacher.to(dtype) / temperature, dim=1)
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)


@dataclass
class LossOutput:
    """The weighted total and each unweighted term (for logging)."""

    total: torch.Tensor
    cmc: torch.Tensor
    kd: torch.Tensor
    ce: torch.Tensor

    def as_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "cmc", "kd", "ce")}


class MFCLIPLoss(nn.Module):
    """Computes the three terms from a model output; a term with weight 0 is not computed."""

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, out: object, labels: torch.Tensor) -> LossOutput:
        cfg = self.cfg
        zero = out.logits.new_zeros(())
        cmc = kd = ce = zero
        if cfg.cmc > 0 and out.logits_per_image is not None:
            cmc = contrastive_loss(out.logits_per_image, out.logits_per_text)
        if cfg.kd > 0 and out.text_features is not None and out.predicted_text is not None:
            kd = distillation_loss(
                out.predicted_text, out.text_features, cfg.kd_temperature, cfg.kd_detach_teacher
            )
        if cfg.ce > 0:
            ce = F.cross_entropy(
                out.logits.to(torch.promote_types(out.logits.dtype, torch.float32)), labels
            )
        total = cfg.cmc * cmc + cfg.kd * kd + cfg.ce * ce
        return LossOutput(total=total, cmc=cmc, kd=kd, ce=ce)
