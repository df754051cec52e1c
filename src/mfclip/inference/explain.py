"""Explanations: where the model looked and what it saw.

The panel shows, side by side: the input with the face box (green) and the richest patch
(red), the SRM noise residual of that patch (what the noise branch encodes), and a Grad-CAM
relevance map of the "fake" decision over the global branch's last feature map (the patch
tokens entering the last transformer block for CLIP, the last convolution for the official
variant).
The heat-map covers the global branch; the noise branch's evidence is the patch and its map.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..model.mfclip import MFCLIP
from ..operating import OperatingPoint
from .prepare import Preparer
from .sample import Sample
from .scoring import Scorer

__all__ = ["Explanation", "explain_sample", "relevance_map"]

PANEL = 256


@dataclass
class Explanation:
    """The verdict plus the pictures behind it; ``image`` is the side-by-side panel."""

    fake_prob: float
    label: str
    threshold: float
    face_box: list[int] | None
    patch_box: list[int] | None
    heatmap: np.ndarray
    noise_map: np.ndarray | None
    image: Image.Image

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.image.save(path)
        return path

    def to_png_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.image.save(buf, format="PNG")
        return buf.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {
            "fake_prob": self.fake_prob,
            "label": self.label,
            "threshold": self.threshold,
            "face_box": self.face_box,
            "patch_box": self.patch_box,
        }


def _target_module(model: MFCLIP) -> torch.nn.Module:
    encoder = model.visual.global_encoder
    if hasattr(encoder, "vision_model"):
        return encoder.vision_model.encoder.layers[-1]
    return encoder.stem  # official variant: the VGG stem's last feature map


def relevance_map(model: MFCLIP, images: torch.Tensor, target: str = "fake") -> np.ndarray:
    """Grad-CAM of the margin of ``target`` (``fake``/``real``) for one image -> ``(S, S)``.

    ``images`` is the model input (uint8, or float in [0, 1]), batch of one.

    The map is in [0, 1] (relative relevance; all zeros when nothing supports the target).
    """
    sign = 1.0 if target == "fake" else -1.0
    captured: dict[str, torch.Tensor] = {}

    vit = hasattr(model.visual.global_encoder, "vision_model")

    def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
        # ViT: the last block's *input* tokens. Its output patch tokens never reach the pooled
        # class token (CLIP pools before any further mixing), so their gradient is zero.
        tensor = args[0] if vit else output
        tensor = tensor[0] if isinstance(tensor, tuple) else tensor
        tensor.retain_grad()
        captured["act"] = tensor

    handle = _target_module(model).register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = images.detach().requires_grad_(False)
            logits = model(x).logits
            (sign * (logits[:, 1] - logits[:, 0])).sum().backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    act, grad = captured["act"].detach(), captured["act"].grad
    if act.dim() == 3:  # ViT tokens (1, 1 + g*g, C): drop the class token, make a grid
        tokens, grads = act[:, 1:], grad[:, 1:]
        side = round(tokens.shape[1] ** 0.5)
        weights = grads.mean(dim=1, keepdim=True)
        cam = (tokens * weights).sum(-1).reshape(1, 1, side, side)
    else:  # conv map (1, C, h, w)
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = (act * weights).sum(1, keepdim=True)
    cam = torch.relu(cam)
    size = images.shape[-1]
    cam = torch.nn.functional.interpolate(
        cam, size=(size, size), mode="bilinear", align_corners=False
    )
    cam = cam[0, 0].float().cpu().numpy()
    peak = cam.max()
    return cam / peak if peak > 0 else cam


def _colorize(heat: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["jet"](heat)[..., :3] * 255).astype(np.uint8)


def _fit(image: Image.Image, sharp: bool = False) -> Image.Image:
    """Scale (up or down) into a PANEL square; ``sharp`` keeps pixels crisp (noise maps)."""
    factor = PANEL / max(image.size)
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    resample = Image.Resampling.NEAREST if sharp else Image.Resampling.LANCZOS
    image = image.resize(size, resample)
    canvas = Image.new("RGB", (PANEL, PANEL), (24, 24, 24))
    canvas.paste(image, ((PANEL - image.width) // 2, (PANEL - image.height) // 2))
    return canvas


def _draw_boxes(
    rgb: np.ndarray, boxes: list[tuple[list[int] | None, tuple[int, int, int]]]
) -> Image.Image:
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 150))
    for box, colour in boxes:
        if box is not None:
            draw.rectangle(box, outline=colour, width=width)
    return image


def explain_sample(model: MFCLIP, sample: Sample, point: OperatingPoint) -> Explanation:
    """Score one prepared sample (the one scoring loop) and draw its explanation panel."""
    x = Preparer.batch([sample], model.device)
    scores = Scorer(model, noise_maps=True)(x)
    prob = float(scores.fake_prob[0])
    label = point.label(prob)
    threshold = point.threshold
    patch_box = None
    if scores.boxes is not None:
        patch_box = sample.placement.to_source(scores.boxes[0].tolist())
    target = "real" if label == "real" else "fake"  # uncertain: what speaks for a forgery
    heat = relevance_map(model, x, target=target)

    original = sample.rgb if sample.rgb is not None else np.zeros((PANEL, PANEL, 3), np.uint8)
    panels = [
        _fit(_draw_boxes(original, [(sample.face_box, (0, 220, 0)), (patch_box, (230, 0, 0))]))
    ]
    captions = ["input: face (green), richest patch (red)"]
    noise_map = None
    if scores.noise_maps is not None:
        srm = scores.noise_maps[0].numpy()  # (3, p, p), clipped to +-srm_clip
        clip = float(model.config.noise.srm_clip) or 1.0
        noise_map = np.transpose(srm, (1, 2, 0))
        shown = np.clip(np.abs(noise_map) / clip * 4.0, 0, 1)  # residuals are small: stretch
        panels.append(_fit(Image.fromarray((shown * 255).astype(np.uint8)), sharp=True))
        captions.append("SRM noise of the patch")
    overlay = (0.55 * sample.pixels + 0.45 * _colorize(heat)).astype(np.uint8)
    panels.append(_fit(Image.fromarray(overlay)))
    captions.append(f"what supports '{target}' (Grad-CAM)")

    header, footer = 34, 22
    canvas = Image.new("RGB", (PANEL * len(panels), PANEL + header + footer), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    verdict = f"{label.upper()}  p(fake) = {prob:.3f}  (threshold {threshold:.3f})"
    colour = {"fake": (200, 0, 0), "real": (0, 120, 0)}.get(label, (170, 110, 0))
    draw.text((8, 10), verdict, fill=colour)
    for i, (panel, caption) in enumerate(zip(panels, captions, strict=True)):
        canvas.paste(panel, (i * PANEL, header))
        draw.text((i * PANEL + 6, header + PANEL + 5), caption, fill=(40, 40, 40))
    return Explanation(prob, label, threshold, sample.face_box, patch_box, heat, noise_map, canvas)
