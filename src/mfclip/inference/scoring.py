"""The one scoring loop: batches of uint8 images -> probabilities, boxes, features.

The trainer's validation, ``mfclip evaluate`` and :class:`~mfclip.inference.Detector` all
score through :class:`Scorer`, so eval mode, no-grad, device transfer, mixed precision and the
read-out of the outputs are written once and the same image gets the same score every way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from ..device import AMP_MODES, autocast
from ..model.mfclip import MFCLIP

__all__ = ["Scorer", "Scores"]

T = TypeVar("T")


@dataclass
class Scores:
    """One batch's results, on the CPU, float32.

    ``fake_prob`` is calibrated with the model's stored calibration; ``raw_prob`` is the
    uncalibrated softmax and ``margin`` the raw logit margin (what calibration is fitted on).
    """

    fake_prob: torch.Tensor
    logits: torch.Tensor
    raw_prob: torch.Tensor
    margin: torch.Tensor
    boxes: torch.Tensor | None = None
    features: torch.Tensor | None = None
    #: SRM residual of each selected patch ``(B, 3, p, p)`` (explanations).
    noise_maps: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.fake_prob)


class Scorer:
    """Scores uint8 ``(B, 3, S, S)`` batches with ``model`` in eval mode, without gradients.

    ``amp``: ``"none"``, ``"fp16"`` or ``"bf16"`` (autocast on CUDA only; elsewhere float32).
    ``features``: also return the fused visual features (for t-SNE plots); ``noise_maps``:
    the SRM residuals of the selected patches (for explanations).
    """

    def __init__(
        self, model: MFCLIP, amp: str = "none", features: bool = False, noise_maps: bool = False
    ) -> None:
        if amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
        self.model = model
        self.amp = amp
        self.features = features
        self.noise_maps = noise_maps

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> Scores:
        model = self.model
        was_training = model.training
        model.eval()
        try:
            with autocast(self.amp, model.device):
                out = model(images.to(model.device, non_blocking=True))
        finally:
            model.train(was_training)
        return Scores(
            fake_prob=out.fake_prob.float().cpu(),
            logits=out.logits.float().cpu(),
            raw_prob=out.raw_fake_prob.float().cpu(),
            margin=out.margin.float().cpu(),
            boxes=out.boxes.cpu() if out.boxes is not None else None,
            features=out.visual_features.float().cpu() if self.features else None,
            noise_maps=(
                out.noise_map.float().cpu()
                if self.noise_maps and out.noise_map is not None
                else None
            ),
        )

    def batches(
        self, batches: Iterable[T | None], images: Callable[[T], torch.Tensor] | None = None
    ) -> Iterator[tuple[T, Scores]]:
        """Score every batch of an iterable (a DataLoader); ``None`` batches are skipped.

        ``images(batch)`` picks the image tensor (default: ``batch["image"]``).
        """
        pick = images or _image_key
        for batch in batches:
            if batch is None:
                continue
            yield batch, self(pick(batch))


def _image_key(batch: Any) -> torch.Tensor:
    return batch["image"]
