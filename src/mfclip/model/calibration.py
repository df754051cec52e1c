"""Calibration inside the model: classifier logits -> the probability a person reads.

A detector's raw softmax says little about how often it is right (a tiny model gave 56 % of
real photos a "fake" probability above 0.5). The map fitted on validation data after model
selection (:mod:`mfclip.evaluate.calibration`) is applied here, in the forward pass, so every
path that scores an image (``Detector``, the CLI, the service, ``evaluate``, the exported ONNX
graph) reports the same calibrated ``fake_prob``; the raw logit margin stays available.

Methods, on the raw margin ``z = logit_fake - logit_real``:

* ``none``: the raw softmax (``sigmoid(z)``), what an uncalibrated model reports;
* ``temperature``: ``sigmoid(z / T)`` (Guo et al., 2017; one parameter, keeps the ranking);
* ``platt``: ``sigmoid(a * z + b)`` (Platt, 1999);
* ``isotonic``: a monotone piecewise-linear map through fitted knots (Zadrozny and Elkan,
  2002), written with broadcasting and gathers so that it traces for ONNX.

The parameters are buffers that are not saved in ``model.safetensors``: they live in
``config.json`` (``training.calibration``), so refitting them never touches the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import Any

import torch
from torch import nn

__all__ = ["METHODS", "Calibration"]

METHODS = ("none", "temperature", "platt", "isotonic")


class Calibration(nn.Module):
    """Logits ``(B, 2)`` -> calibrated p(fake) ``(B,)``; identity (raw softmax) by default."""

    params: torch.Tensor
    knots_x: torch.Tensor
    knots_y: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.method = "none"
        self.register_buffer("params", torch.tensor([1.0, 0.0]), persistent=False)
        self.register_buffer("knots_x", torch.zeros(0), persistent=False)
        self.register_buffer("knots_y", torch.zeros(0), persistent=False)

    def load(self, spec: Mapping[str, Any] | None) -> Calibration:
        """Set from a ``to_dict()`` mapping (``None`` or ``{"method": "none"}``: identity)."""
        spec = dict(spec or {"method": "none"})
        method = spec.get("method", "none")
        if method not in METHODS:
            raise ValueError(
                f"calibration method must be one of {', '.join(METHODS)}, got {method!r}"
            )
        device = self.params.device
        params, xs, ys = [1.0, 0.0], [], []
        if method == "temperature":
            temperature = float(spec["temperature"])
            if not temperature > 0:
                raise ValueError(f"temperature must be positive, got {temperature}")
            params = [1.0 / temperature, 0.0]
        elif method == "platt":
            params = [float(spec["a"]), float(spec["b"])]
        elif method == "isotonic":
            xs, ys = [float(v) for v in spec["x"]], [float(v) for v in spec["y"]]
            if len(xs) < 2 or len(xs) != len(ys) or any(b <= a for a, b in pairwise(xs)):
                raise ValueError("isotonic calibration needs >= 2 knots with increasing x")
            if any(b < a for a, b in pairwise(ys)) or min(ys) < 0 or max(ys) > 1:
                raise ValueError("isotonic calibration needs non-decreasing y in [0, 1]")
        self.method = method
        self.params = torch.tensor(params, dtype=torch.float32, device=device)
        self.knots_x = torch.tensor(xs, dtype=torch.float32, device=device)
        self.knots_y = torch.tensor(ys, dtype=torch.float32, device=device)
        self.spec = spec
        return self

    def to_dict(self) -> dict[str, Any]:
        """The mapping :meth:`load` takes (what ``config.json`` stores)."""
        return dict(getattr(self, "spec", None) or {"method": "none"})

    @staticmethod
    def margin(logits: torch.Tensor) -> torch.Tensor:
        """The raw logit margin ``logit_fake - logit_real`` (float32)."""
        logits = logits.float()
        return logits[:, 1] - logits[:, 0]

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        z = self.margin(logits)
        if self.method == "none":  # == softmax(logits)[:, 1], from the margin alone
            return torch.sigmoid(z)
        if self.method in ("temperature", "platt"):
            return torch.sigmoid(self.params[0] * z + self.params[1])
        return _interpolate(z, self.knots_x, self.knots_y)

    def extra_repr(self) -> str:
        return f"method={self.method}"


def _interpolate(z: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """``np.interp(z, xs, ys)`` (clamped at the ends) in traceable tensor operations."""
    z = z.clamp(xs[0], xs[-1])
    # Index of the segment each value falls in: knots at or below it, minus one, kept in range.
    upper = (z[:, None] >= xs[None, 1:-1]).sum(dim=1)  # 0 .. K-2
    x0, x1 = xs[upper], xs[upper + 1]
    y0, y1 = ys[upper], ys[upper + 1]
    width = (x1 - x0).clamp_min(1e-12)
    return y0 + (y1 - y0) * ((z - x0) / width)
