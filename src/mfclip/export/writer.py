"""ONNX export of the inference path (needs torch and onnx; the runtime needs neither).

``export_onnx(model_or_source, "model.onnx")`` writes a graph ``images (B, 3, S, S) uint8 ->
fake_prob (B,) float32, boxes (B, 4) int64`` (``boxes`` only when the noise branch is on). The
graph is the model's own forward pass, traced: it normalises inside and selects the richest
patch with the same exact integer arithmetic as PyTorch (:mod:`mfclip.model.selection`), so
ONNX Runtime picks the same patch bit for bit; the export verifies this (and the
probabilities) before it reports success. The decision threshold and the preprocessing are
stored as ONNX metadata for :class:`mfclip.export.runtime.OnnxDetector`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ExportError
from ..fileio import publish
from ..loading import load_model
from ..model.mfclip import MFCLIP
from ..version import __version__
from .metadata import BOXES_NAME, FORMAT, INPUT_NAME, INSTALL_HINT, PROB_NAME

__all__ = ["DEFAULT_ATOL", "DEFAULT_OPSET", "ExportResult", "export_onnx", "onnx_metadata"]

log = logging.getLogger(__name__)

#: Opset 17 is the first with a native LayerNormalization; older runtimes lack it.
DEFAULT_OPSET = 17
#: Largest |p_onnx - p_torch| that the export's own check accepts (float32 reassociation).
DEFAULT_ATOL = 1e-4


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and how the check against PyTorch went."""

    path: Path
    opset: int
    #: Fixed batch size, or ``None`` for a dynamic batch axis.
    batch_size: int | None
    outputs: list[str]
    metadata: dict[str, str] = field(default_factory=dict)
    #: Largest |p_onnx - p_torch| on the check batch (``None`` when not verified).
    max_abs_diff: float | None = None
    #: Whether ONNX Runtime chose the same patch for every check image (``None``: not checked).
    boxes_equal: bool | None = None
    seconds: float = 0.0

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def onnx_metadata(model: MFCLIP) -> dict[str, str]:
    """The ``metadata_props`` written into the ONNX model (all values are strings)."""
    cfg = model.config
    pre = cfg.preprocess
    has_boxes = model.visual.noise is not None
    return {
        "format": FORMAT,
        "mfclip_version": __version__,
        "model_name": cfg.name,
        "variant": cfg.variant,
        "threshold": repr(model.threshold),
        "threshold_rule": str(model.training_info.get("threshold_rule", "default 0.5")),
        "image_size": str(pre.image_size),
        "resize": str(pre.resize),
        "interpolation": pre.interpolation,
        "mean": json.dumps([float(v) for v in pre.mean]),
        "std": json.dumps([float(v) for v in pre.std]),
        "input": (
            f"{INPUT_NAME}: uint8 (batch, 3, {pre.image_size}, {pre.image_size}) RGB pixels of "
            "the resized, centre-cropped image; the graph normalises them"
        ),
        "outputs": json.dumps([PROB_NAME, BOXES_NAME] if has_boxes else [PROB_NAME]),
        "noise_enabled": json.dumps(has_boxes),
        # fake_prob leaves the graph calibrated: the calibration is part of the traced forward.
        "calibration": json.dumps(model.calibration.to_dict(), sort_keys=True),
        "config": json.dumps(cfg.to_dict(), sort_keys=True),
        "training": json.dumps(model.training_info, sort_keys=True, default=str),
    }


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(f"ONNX export needs the 'onnx' package: {INSTALL_HINT}") from exc
    return onnx


class _MatmulAdaptiveAvgPool(nn.Module):
    """``AdaptiveAvgPool2d`` as ``A @ x @ A.T`` with PyTorch's bins, for any sizes.

    The exporter only handles output sizes that divide the input; the same average over the
    same bins (``floor(i*n/m)`` to ``ceil((i+1)*n/m)``) as two matrix products has none of
    that limit (equal up to float32 summation order).
    """

    def __init__(self, in_size: int, out_size: int) -> None:
        super().__init__()
        weight = torch.zeros(out_size, in_size)
        for i in range(out_size):
            lo = (i * in_size) // out_size
            hi = -((-(i + 1) * in_size) // out_size)
            weight[i, lo:hi] = 1.0 / (hi - lo)
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x)
        return torch.matmul(torch.matmul(w, x), w.t())


class _InferenceGraph(nn.Module):
    """``MFCLIP.forward`` without text, returning plain tensors for the exporter."""

    def __init__(self, model: MFCLIP) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> Any:
        out = self.model(pixel_values)
        if out.boxes is None:
            return out.fake_prob
        return out.fake_prob, out.boxes


@contextlib.contextmanager
def _export_mode(model: MFCLIP) -> Iterator[None]:
    """Export-friendly pooling and the plain attention path while tracing, then restore.

    The richest-patch selection needs no stand-in: it traces as plain tensor operations
    (:mod:`mfclip.model.selection`), so the graph runs the same arithmetic as PyTorch.
    """
    noise = model.visual.noise
    encoder = noise.encoder if noise is not None else None
    pool = encoder.pool if encoder is not None else None
    mha = getattr(torch.backends, "mha", None)
    fastpath = mha.get_fastpath_enabled() if mha is not None else None
    was_training = model.training
    try:
        grid = getattr(pool, "output_size", None)
        # The exporter only pools by whole factors: 28 -> 7 exports, 16 -> 7 does not.
        if (
            isinstance(pool, nn.AdaptiveAvgPool2d)
            and isinstance(grid, int)
            and encoder.spatial % grid
        ):
            encoder.pool = _MatmulAdaptiveAvgPool(encoder.spatial, grid).to(model.device)
        # nn.TransformerEncoderLayer's fused eval fast path has no ONNX symbolic.
        if mha is not None:
            mha.set_fastpath_enabled(False)
        model.eval()
        yield
    finally:
        if encoder is not None:
            encoder.pool = pool
        if mha is not None:
            mha.set_fastpath_enabled(fastpath)
        model.train(was_training)


def _probe_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    """``(count, 3, S, S)`` uint8 images, varied for the patch choice.

    Cycles through texture in one random quadrant over a smooth gradient (the choice is not the
    first candidate), uniform noise, a constant image (every candidate ties: the first must
    win) and stripes.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    out = np.empty((count, 3, size, size), np.uint8)
    for i in range(count):
        kind = i % 4
        if kind == 0:
            img = np.stack([xx, yy, (xx + yy) / 2]) * 200 + 20
            half = size // 2
            qy, qx = rng.integers(0, 2, size=2) * half
            img[:, qy : qy + half, qx : qx + half] += rng.normal(0, 25, (3, half, half))
        elif kind == 1:
            img = rng.integers(0, 256, (3, size, size)).astype(np.float32)
        elif kind == 2:
            img = np.full((3, size, size), 128.0, np.float32)
        else:
            img = np.broadcast_to(((xx * size).astype(int) % 7 * 36)[None], (3, size, size))
        out[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


def _export_kwargs(torch: Any) -> dict[str, Any]:
    params = inspect.signature(torch.onnx.export).parameters
    return {"dynamo": False} if "dynamo" in params else {}


def export_onnx(
    model: MFCLIP | str | os.PathLike,
    out: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    batch_size: int | None = None,
    verify: bool = True,
    atol: float = DEFAULT_ATOL,
) -> ExportResult:
    """Export the inference path (image -> fake probability, richest patch) to ONNX.

    ``model`` is an :class:`~mfclip.MFCLIP` or a saved model directory. ``batch_size=None``
    gives a dynamic batch axis; an int fixes it (some runtimes and compilers prefer that).
    The spatial size is the model's ``preprocess.image_size``. With ``verify`` (the default)
    the written file is run with ONNX Runtime on a check batch and compared with PyTorch:
    probabilities within ``atol`` and identical boxes, else :class:`ExportError`.
    The model must be float32; it is left as it was (mode and modules restored), but it is
    modified while the export runs, so do not use it from another thread meanwhile.
    """
    onnx = _require_onnx()
    start = time.perf_counter()
    if not isinstance(model, torch.nn.Module):
        model = load_model(model)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        raise ExportError(
            f"export needs a float32 model, got parameters of {sorted(map(str, dtypes))}"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = model.config.preprocess.image_size
    has_boxes = model.visual.noise is not None
    outputs = [PROB_NAME, BOXES_NAME] if has_boxes else [PROB_NAME]
    # Trace with 2 images for a dynamic axis, so no size-1 broadcast gets baked in.
    trace_batch = batch_size or 2
    dummy = torch.from_numpy(_probe_images(trace_batch, size, seed=1)).to(model.device)
    dynamic_axes = None
    if batch_size is None:
        dynamic_axes = {name: {0: "batch"} for name in (INPUT_NAME, *outputs)}
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        raw = staging / "raw.onnx"
        with (
            _export_mode(model),
            torch.no_grad(),
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")
            try:
                torch.onnx.export(
                    _InferenceGraph(model).eval(),
                    (dummy,),
                    str(raw),
                    opset_version=int(opset),
                    input_names=[INPUT_NAME],
                    output_names=outputs,
                    dynamic_axes=dynamic_axes,
                    do_constant_folding=True,
                    **_export_kwargs(torch),
                )
            except Exception as exc:  # the exporter raises many types; name the step
                raise ExportError(f"torch.onnx.export failed at opset {opset}: {exc}") from exc
        for w in caught:  # tracer and deprecation chatter: useful when debugging only
            log.debug("export warning: %s", w.message)
        proto = onnx.load(str(raw))
        meta = onnx_metadata(model)
        del proto.metadata_props[:]
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        proto.doc_string = (
            f"mfclip {__version__} {model.config.name}: {INPUT_NAME} -> {', '.join(outputs)}"
        )
        onnx.checker.check_model(proto)
        final = staging / "model.onnx"
        onnx.save(proto, str(final))
        publish(final)
        os.replace(final, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = ExportResult(out, int(opset), batch_size, outputs, meta)
    if verify:
        result.max_abs_diff, result.boxes_equal = _verify(model, out, batch_size, atol)
    result.seconds = time.perf_counter() - start
    log.info("exported %s to %s in %.1f s", model.config.name, out, result.seconds)
    return result


def _verify(
    model: MFCLIP, path: Path, batch_size: int | None, atol: float
) -> tuple[float, bool | None]:
    """Run the file with ONNX Runtime and PyTorch on the probe batch; raise on disagreement."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError(f"verifying the export needs onnxruntime: {INSTALL_HINT}") from exc
    size = model.config.preprocess.image_size
    # 5 images for a dynamic graph: a batch size the trace never saw.
    x = torch.from_numpy(_probe_images(batch_size or 5, size)).to(model.device)
    pred = model.predict(x)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = session.run(None, {INPUT_NAME: x.detach().cpu().numpy()})
    diff = float(np.abs(outs[0] - pred.fake_prob.detach().cpu().numpy()).max())
    boxes_equal = None
    if pred.boxes is not None:
        boxes_equal = bool(np.array_equal(outs[1], pred.boxes.cpu().numpy()))
    if not math.isfinite(diff) or diff > atol or boxes_equal is False:
        raise ExportError(
            f"the exported graph disagrees with PyTorch: max |dp| = {diff:.3g} (allowed "
            f"{atol:g}), boxes identical: {boxes_equal}; the file is at {path}"
        )
    return diff, boxes_equal
