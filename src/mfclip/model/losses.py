"""MFCLIP's objective: L = w_cmc * L_cmc + w_kd * L_kd + w_ce * L_ce.

The default weights equal the released training script's effective objective:

``(CE(S, I) + CE(S^T, I)) / 2 + KLDiv(log_softmax(p/T), softmax(t/T) * a*T^2)
+ (1 - a) * CE(y_hat, y) + CE(y_hat, y)`` with ``T = 20`` and ``a = 0.5``, where ``S`` are the
SPA-weighted image-text logits, ``p`` the predictor output and ``t`` the (not detached) text
feature. Scaling the KL target by ``a*T^2 = 200`` equals ``200 * KL(softmax(t/T) ||
softmax(p/T)) + 200*log(200)``; the constant has no gradient and is left out here, so the
released loss *values* are ours + 1059.66 when ``kd = 200``.

Under DDP (``torch.distributed`` initialised with more than one process) the contrastive term
gathers the visual and text features of every rank, as open_clip's ``ClipLoss`` does, and scores
the global batch: its value equals a single-process run on the concatenated batch. Gradients
reach every rank's slice through an ``all_gather`` with a summing backward; local batches
may differ in size (they are padded to the largest and trimmed after the gather).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..config import LossConfig

__all__ = [
    "LossInput",
    "LossOutput",
    "MFCLIPLoss",
    "SimilarityFn",
    "contrastive_loss",
    "distillation_loss",
    "gather_batch",
    "world_size",
]

#: ``(visual, text, tokens) -> (B, B)`` SPA-weighted logits (``MFCLIP.contrastive_logits``).
SimilarityFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


class LossInput(Protocol):
    """What the loss reads from a forward pass (:class:`~.mfclip.MFCLIPOutput` provides it)."""

    logits: torch.Tensor
    visual_features: torch.Tensor
    text_features: torch.Tensor | None
    predicted_text: torch.Tensor | None
    tokens: torch.Tensor | None
    scorer: SimilarityFn | None

    @property
    def logits_per_image(self) -> torch.Tensor | None: ...

    @property
    def logits_per_text(self) -> torch.Tensor | None: ...


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


def world_size() -> int:
    """Processes in the default group; 1 when ``torch.distributed`` is not in use."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _local_sizes(n: int, device: torch.device) -> list[int]:
    """Every rank's local batch size (a tensor collective: nothing is pickled)."""
    size = torch.tensor([n], dtype=torch.int64, device=device)
    sizes = [torch.empty_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s) for s in sizes]


def _pad_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """``tensor`` with zero rows appended up to ``rows`` (all_gather needs equal shapes)."""
    missing = rows - tensor.shape[0]
    if missing == 0:
        return tensor.contiguous()
    pad = tensor.new_zeros((missing, *tensor.shape[1:]))
    return torch.cat([tensor, pad], dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """``all_gather`` whose backward returns each rank the summed gradient of its own slice.

    What ``torch.distributed.nn.functional.all_gather`` does (deprecated in recent torch),
    written with the stable collectives: forward gathers equal-shaped slices; backward sums
    every rank's gradient of the gathered tensor (``all_reduce``) and keeps this rank's rows.
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.rank = dist.get_rank()
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return tuple(parts)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack([g.contiguous() for g in grads])
        dist.all_reduce(stacked)
        return stacked[ctx.rank]


def gather_batch(
    visual: torch.Tensor, text: torch.Tensor, tokens: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Every rank's features and prompt tokens, concatenated in rank order.

    Features keep their gradient for every rank's slice (each rank scores the whole global
    batch, and the all_gather backward sums the gradients back onto their owners); the tokens
    only weight the logits (SPA), so they are gathered without one.
    """
    sizes = _local_sizes(visual.shape[0], visual.device)
    rows = max(sizes)

    def trim(parts: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)], dim=0)

    all_visual = trim(_GatherWithGrad.apply(_pad_rows(visual, rows)))
    all_text = trim(_GatherWithGrad.apply(_pad_rows(text, rows)))
    all_tokens = None
    if tokens is not None:
        padded = _pad_rows(tokens, rows)
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        all_tokens = trim(parts)
    return all_visual, all_text, all_tokens


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

    def contrastive(self, out: LossInput) -> torch.Tensor | None:
        """L_cmc over the global batch, from features; ``None`` when the output has no text.

        An output without a scorer (built by hand) is scored from its own, local logits.
        """
        scorer = out.scorer
        if scorer is None or out.text_features is None:
            if out.logits_per_image is None:
                return None
            return contrastive_loss(out.logits_per_image, out.logits_per_text)
        visual, text, tokens = out.visual_features, out.text_features, out.tokens
        if world_size() > 1:
            visual, text, tokens = gather_batch(visual, text, tokens)
        logits = scorer(visual, text, tokens)
        return contrastive_loss(logits, logits.t())

    def forward(self, out: LossInput, labels: torch.Tensor) -> LossOutput:
        cfg = self.cfg
        zero = out.logits.new_zeros(())
        cmc = kd = ce = zero
        if cfg.cmc > 0:
            term = self.contrastive(out)
            cmc = zero if term is None else term
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
