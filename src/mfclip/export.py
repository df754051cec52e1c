"""ONNX export of the inference path, and a numpy + ONNX Runtime detector to run the result.

``export_onnx(model_or_dir, "model.onnx")`` writes a graph ``pixel_values (B, 3, S, S) float32
-> fake_prob (B,) float32, boxes (B, 4) int64`` (``boxes`` only when the noise branch is on),
with the decision threshold and the preprocessing stored as ONNX metadata, so a deployment needs
neither PyTorch nor mfclip's config code: :class:`OnnxDetector` needs only numpy, Pillow and
onnxruntime, and this module imports torch only inside the export functions.

The richest-patch selection of the noise branch does not trace as written (Python ints from
tensor shapes, a validity check that reads tensor values, an index-put into a zero-padded
integral image), so during export the branch is swapped for :func:`_traceable_noise_branch`:
the same integer arithmetic for the one input size the graph serves (the grid, fixed-point LUT
and corner indices become constants), written with ops whose shapes ONNX can infer. Selection
compares exact int64 window sums, so ONNX Runtime picks the same patch as PyTorch bit for bit;
the export verifies this (and the probabilities) before it reports success.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps

from .data.functional import center_crop, resize_shortest
from .errors import ExportError
from .version import __version__

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .model.mfclip import MFCLIP
    from .model.noise import NoiseBranch

__all__ = [
    "DEFAULT_OPSET",
    "ExportError",
    "ExportResult",
    "OnnxDetector",
    "OnnxPrediction",
    "OnnxPreprocess",
    "export_onnx",
    "onnx_metadata",
    "preprocess_image",
    "read_metadata",
]

log = logging.getLogger(__name__)

#: Opset 17 is the first with a native LayerNormalization; older runtimes lack it.
DEFAULT_OPSET = 17
#: Version of the graph contract (input, outputs, metadata keys) written into the metadata.
FORMAT = "mfclip-onnx/1"
INPUT_NAME = "pixel_values"
PROB_NAME = "fake_prob"
BOXES_NAME = "boxes"
#: Largest |p_onnx - p_torch| that the export's own check accepts (float32 reassociation).
DEFAULT_ATOL = 1e-4
_INSTALL_HINT = "install the ONNX extra: pip install 'mfclip[onnx]'"


# ---------------------------------------------------------------------------------------------
# Preprocessing and metadata (numpy + Pillow only)


@dataclass(frozen=True)
class OnnxPreprocess:
    """What the graph expects: the same fields as ``mfclip.config.PreprocessConfig``."""

    image_size: int = 224
    resize: int = 224
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    interpolation: str = "bicubic"

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> OnnxPreprocess:
        """Parse the preprocessing keys that :func:`onnx_metadata` wrote."""
        missing = [
            k for k in ("image_size", "resize", "mean", "std", "interpolation") if k not in meta
        ]
        if missing:
            raise ValueError(
                f"the ONNX model lacks the metadata {missing}: was it written by mfclip export?"
            )
        return cls(
            image_size=int(meta["image_size"]),
            resize=int(meta["resize"]),
            mean=tuple(float(v) for v in json.loads(meta["mean"])),
            std=tuple(float(v) for v in json.loads(meta["std"])),
            interpolation=meta["interpolation"],
        )


def _as_pil(image: Image.Image | np.ndarray | str | os.PathLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(
                f"arrays must be uint8 (H, W) or (H, W, 3) RGB, got {image.dtype} {image.shape}"
            )
        return Image.fromarray(image)
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as opened:
            opened.load()
            return ImageOps.exif_transpose(opened).convert("RGB")  # upright, as mfclip decodes
    raise TypeError(f"expected a PIL image, a uint8 array or a path, got {type(image).__name__}")


def preprocess_image(
    image: Image.Image | np.ndarray | str | os.PathLike, preprocess: OnnxPreprocess
) -> np.ndarray:
    """One image -> ``(3, S, S)`` float32 CLIP-normalised, as ``build_eval_transform`` does.

    A numpy re-implementation (resize shortest edge, centre crop, /255, normalise) so that
    deployments need no torch; the float32 operations are the same, so the result is identical
    to mfclip's evaluation transform, bit for bit (tested).
    """
    pil = _as_pil(image)
    pil = center_crop(
        resize_shortest(pil.convert("RGB"), preprocess.resize, preprocess.interpolation),
        preprocess.image_size,
    )
    array = np.asarray(pil, dtype=np.float32) / np.float32(255.0)
    mean = np.asarray(preprocess.mean, dtype=np.float32)
    std = np.asarray(preprocess.std, dtype=np.float32)
    return np.ascontiguousarray(((array - mean) / std).transpose(2, 0, 1))


def _crop_geometry(size: tuple[int, int], pre: OnnxPreprocess) -> tuple[float, int, int]:
    """``(scale, crop_x, crop_y)`` mapping crop pixels back to the original image."""
    width, height = size
    scale = pre.resize / min(width, height)
    new_w = pre.resize if width <= height else int(pre.resize * width / height)
    new_h = pre.resize if height < width else int(pre.resize * height / width)
    return scale, (new_w - pre.image_size) // 2, (new_h - pre.image_size) // 2


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of an exported model (``onnx`` if installed, else ONNX Runtime)."""
    try:
        import onnx
    except ImportError:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return dict(session.get_modelmeta().custom_metadata_map)
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


# ---------------------------------------------------------------------------------------------
# Detector (numpy + Pillow + onnxruntime)


@dataclass
class OnnxPrediction:
    """Scores of a batch: probabilities, verdicts at the stored threshold, richest patches."""

    #: ``(B,)`` float32 probability that each image is fake.
    fake_prob: np.ndarray
    #: ``(B,)`` bool, ``fake_prob >= threshold`` (mfclip's rule).
    is_fake: np.ndarray
    threshold: float
    #: ``(B, 4)`` int64 richest patch ``(x0, y0, x1, y1)`` in model-input pixels, or ``None``
    #: when the model has no noise branch.
    boxes: np.ndarray | None = None
    #: The same boxes in the coordinates of each original image (PIL inputs only).
    image_boxes: list[list[int]] | None = None

    @property
    def labels(self) -> list[str]:
        return ["fake" if f else "real" for f in self.is_fake.tolist()]


class OnnxDetector:
    """Runs an ``mfclip export`` model with ONNX Runtime; needs numpy, Pillow and onnxruntime.

    ``OnnxDetector("model.onnx")(images)`` preprocesses PIL images (or uint8 arrays, or paths)
    exactly like mfclip's evaluation transform and returns an :class:`OnnxPrediction`. The
    threshold and preprocessing come from the model's metadata; ``threshold`` overrides it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        providers: Sequence[str] | None = None,
        threshold: float | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError(f"OnnxDetector needs onnxruntime: {_INSTALL_HINT}") from exc
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model '{self.path}' does not exist")
        self.session = ort.InferenceSession(
            str(self.path), providers=list(providers or ["CPUExecutionProvider"])
        )
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.preprocess_config = OnnxPreprocess.from_metadata(self.metadata)
        stored = float(self.metadata.get("threshold", 0.5))
        self.threshold = float(threshold) if threshold is not None else stored
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        batch_dim = self.session.get_inputs()[0].shape[0]
        #: Fixed batch size of the graph, or ``None`` for a dynamic batch axis.
        self.batch_size: int | None = batch_dim if isinstance(batch_dim, int) else None

    @property
    def has_boxes(self) -> bool:
        return BOXES_NAME in self.output_names

    def preprocess(self, images: Sequence[Any]) -> np.ndarray:
        """Images -> ``(B, 3, S, S)`` float32 model input."""
        return np.stack([preprocess_image(im, self.preprocess_config) for im in images])

    def run(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw graph call on CLIP-normalised input; chunks and pads for fixed-batch graphs."""
        x = np.ascontiguousarray(pixel_values, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"pixel_values must be (B, 3, H, W), got {x.shape}")
        step = self.batch_size or max(len(x), 1)
        probs: list[np.ndarray] = []
        boxes: list[np.ndarray] = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            n = len(chunk)
            if self.batch_size and n < self.batch_size:  # pad by repeating the last image
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch_size - n, 0)])
            outs = dict(
                zip(
                    self.output_names, self.session.run(None, {self.input_name: chunk}), strict=True
                )
            )
            probs.append(outs[PROB_NAME][:n])
            if BOXES_NAME in outs:
                boxes.append(outs[BOXES_NAME][:n])
        prob = np.concatenate(probs) if probs else np.zeros(0, np.float32)
        return prob, (np.concatenate(boxes) if boxes else None)

    def predict_proba(self, images: Any) -> np.ndarray:
        """Fake probability per image, ``(B,)`` float32 (a single image gives ``(1,)``)."""
        return self.predict(images).fake_prob

    def predict(self, images: Any) -> OnnxPrediction:
        """Score one image or a sequence of images (PIL, uint8 ``(H, W, 3)`` arrays, paths)."""
        if isinstance(images, (Image.Image, np.ndarray, str, os.PathLike)):
            images = [images]
        pils = [_as_pil(im) for im in images]
        prob, boxes = self.run(self.preprocess(pils))
        image_boxes = None
        if boxes is not None:
            image_boxes = []
            for pil, box in zip(pils, boxes.tolist(), strict=True):
                scale, cx, cy = _crop_geometry(pil.size, self.preprocess_config)
                x0, y0, x1, y1 = box
                image_boxes.append(
                    [
                        round((x0 + cx) / scale),
                        round((y0 + cy) / scale),
                        round((x1 + cx) / scale),
                        round((y1 + cy) / scale),
                    ]
                )
        return OnnxPrediction(prob, prob >= self.threshold, self.threshold, boxes, image_boxes)

    __call__ = predict


# ---------------------------------------------------------------------------------------------
# Export (torch needed from here on)


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
            f"{INPUT_NAME}: float32 (batch, 3, {pre.image_size}, {pre.image_size}), RGB scaled to "
            "[0, 1] then (x - mean) / std"
        ),
        "outputs": json.dumps([PROB_NAME, BOXES_NAME] if has_boxes else [PROB_NAME]),
        "noise_enabled": json.dumps(has_boxes),
        "config": json.dumps(cfg.to_dict(), sort_keys=True),
        "training": json.dumps(model.training_info, sort_keys=True, default=str),
    }


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(f"ONNX export needs the 'onnx' package: {_INSTALL_HINT}") from exc
    return onnx


@functools.cache
def _torch_modules() -> tuple[type, type, type]:
    """The export-only modules, defined lazily so that importing this file needs no torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from .model.noise import NoiseOutput, patch_grid, quantize_gray

    class TraceableNoiseBranch(nn.Module):
        """``NoiseBranch`` for one input size, in ops the TorchScript exporter handles.

        Same steps as ``noise.select_richest_patch`` + ``NoiseBranch.forward``: grey levels by
        ``quantize_gray`` (shared code), pair weights from the same fixed-point LUT, an int64
        integral image, exact int64 window sums compared by argmin/argmax (first index wins
        ties), the crop, SRM and the encoder (the branch's own modules). What changes is only
        how it is written: constants for the grid, zero padding by ``F.pad`` instead of an
        index-put, corner reads by ``index_select`` on a flattened image, and the crop as two
        ``gather`` calls whose index shapes come from broadcasting against constant zeros, so
        ONNX shape inference keeps every dimension but the batch static.
        """

        def __init__(self, branch: NoiseBranch, height: int, width: int) -> None:
            super().__init__()
            device = branch.srm.kernel_num.device
            self.srm = branch.srm
            self.encoder = branch.encoder
            self.luma = branch.luma
            self.select = branch.select
            self.patch_size = ps = branch.patch_size
            boxes = patch_grid(height, width, ps, branch.stride)
            self.num_candidates = int(boxes.shape[0])
            x0, y0, x1, y1 = boxes.unbind(1)
            xe = x1 - 1  # pairs of columns [x0, x1) start at columns [x0, x1 - 1)
            # Corner reads of the (H + 1, W) integral image, flattened row-major.
            corners = torch.stack(
                [y1 * width + xe, y0 * width + xe, y1 * width + x0, y0 * width + x0]
            )
            self.bits = _fixed_point_bits(height, width)
            buffers = {
                "lut": _pair_weight_lut(self.bits),
                "boxes": boxes,
                "corners": corners.reshape(-1),
                "offsets": torch.arange(ps),
                "row_base": torch.zeros(1, 3, 1, width, dtype=torch.long),
                "col_base": torch.zeros(1, 3, ps, 1, dtype=torch.long),
            }
            for name, value in buffers.items():
                self.register_buffer(name, value.to(device), persistent=False)

        def window_sums(self, images01: torch.Tensor) -> torch.Tensor:
            """``(B, P)`` exact int64 fixed-point pair-weight sums per candidate window."""
            gray = quantize_gray(images01, self.luma).to(torch.int32)
            diff = (gray[:, :, 1:] - gray[:, :, :-1]).abs().to(torch.int64)
            weights = self.lut[diff]  # (B, H, W - 1)
            integ = F.pad(weights.cumsum(1).cumsum(2), (1, 0, 1, 0))  # (B, H + 1, W)
            corners = integ.flatten(1).index_select(1, self.corners)
            c = corners.reshape(-1, 4, self.num_candidates)
            return c[:, 0] - c[:, 1] - c[:, 2] + c[:, 3]

        def forward(self, images01: torch.Tensor) -> NoiseOutput:
            sums = self.window_sums(images01)
            index = sums.argmin(dim=1) if self.select == "argmin" else sums.argmax(dim=1)
            chosen = self.boxes.index_select(0, index)  # (B, 4)
            rows = chosen[:, 1:2] + self.offsets  # (B, ps)
            cols = chosen[:, 0:1] + self.offsets
            strip = images01.gather(2, rows[:, None, :, None] + self.row_base)  # (B, 3, ps, W)
            patches = strip.gather(3, cols[:, None, None, :] + self.col_base)  # (B, 3, ps, ps)
            srm = self.srm(patches)
            return NoiseOutput(self.encoder(srm), chosen, srm, index)

    class MatmulAdaptiveAvgPool(nn.Module):
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

    class InferenceGraph(nn.Module):
        """``MFCLIP.forward`` without text, returning plain tensors for the exporter."""

        def __init__(self, model: MFCLIP) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> Any:
            out = self.model(pixel_values)
            if out.boxes is None:
                return out.fake_prob
            return out.fake_prob, out.boxes

    return TraceableNoiseBranch, MatmulAdaptiveAvgPool, InferenceGraph


def _fixed_point_bits(height: int, width: int) -> int:
    """The ``k`` of ``noise._pair_weight_sums``: weights scaled by ``2**k`` fit int64 sums."""
    total_pairs = max(height * (width - 1), 1)
    k = min(52, 62 - total_pairs.bit_length())
    if k < 16:
        raise ExportError(f"image {height}x{width} is too large for exact GLCM window sums")
    return k


def _pair_weight_lut(bits: int) -> torch.Tensor:
    """``round(2**k / (1 + d^2))`` for d in 0..255, int64 (the noise branch's LUT)."""
    import torch

    d = torch.arange(256, dtype=torch.float64)
    return torch.round((1.0 / (1.0 + d * d)) * 2.0**bits).to(torch.int64)


def _traceable_noise_branch(branch: NoiseBranch, height: int, width: int) -> nn.Module:
    """An export-friendly, mathematically identical stand-in for ``branch`` at ``H x W``."""
    cls, _, _ = _torch_modules()
    return cls(branch, height, width)


@contextlib.contextmanager
def _export_mode(model: MFCLIP, size: int) -> Iterator[None]:
    """Swap in the traceable noise branch and use the plain attention path, then restore."""
    import torch

    noise = model.visual.noise
    encoder = noise.encoder if noise is not None else None
    pool = encoder.pool if encoder is not None else None
    mha = getattr(torch.backends, "mha", None)
    fastpath = mha.get_fastpath_enabled() if mha is not None else None
    was_training = model.training
    try:
        if noise is not None:
            model.visual.noise = _traceable_noise_branch(noise, size, size)
            grid = getattr(pool, "output_size", None)
            # The exporter only pools by whole factors: 28 -> 7 exports, 16 -> 7 does not.
            if (
                isinstance(pool, torch.nn.AdaptiveAvgPool2d)
                and isinstance(grid, int)
                and encoder.spatial % grid
            ):
                encoder.pool = _torch_modules()[1](encoder.spatial, grid).to(model.device)
        # nn.TransformerEncoderLayer's fused eval fast path has no ONNX symbolic.
        if mha is not None:
            mha.set_fastpath_enabled(False)
        model.eval()
        yield
    finally:
        model.visual.noise = noise
        if encoder is not None:
            encoder.pool = pool
        if mha is not None:
            mha.set_fastpath_enabled(fastpath)
        model.train(was_training)


def _probe_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    """``(count, 3, S, S)`` float32 in [0, 1] on the uint8 grid, varied for the patch choice.

    Cycles through texture in one random quadrant over a smooth gradient (the choice is not the
    first candidate), uniform noise, a constant image (every candidate ties: the first must
    win) and stripes.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    out = np.empty((count, 3, size, size), np.float32)
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
        out[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8) / np.float32(255.0)
    return out


def _load_model(path: str | os.PathLike) -> MFCLIP:
    """A saved model directory (or a training run folder: its best checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"model directory '{path}' does not exist (expected a folder written by "
            "save_pretrained, 'mfclip model create' or 'mfclip train')"
        )
    if not path.is_dir():
        raise NotADirectoryError(f"--model must be a model directory, got the file '{path}'")
    from .model.mfclip import MFCLIP
    from .train.checkpoint import resolve_model_dir

    return MFCLIP.from_pretrained(resolve_model_dir(path))


def _export_kwargs(torch: Any) -> dict[str, Any]:
    import inspect

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
    import torch

    onnx = _require_onnx()
    start = time.perf_counter()
    if not isinstance(model, torch.nn.Module):
        model = _load_model(model)
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
    dummy = model.normalize(
        torch.from_numpy(_probe_images(trace_batch, size, seed=1)).to(model.device)
    )
    dynamic_axes = None
    if batch_size is None:
        dynamic_axes = {name: {0: "batch"} for name in (INPUT_NAME, *outputs)}
    graph_cls = _torch_modules()[2]
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        raw = staging / "raw.onnx"
        with (
            _export_mode(model, size),
            torch.no_grad(),
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")
            try:
                torch.onnx.export(
                    graph_cls(model).eval(),
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
    import torch

    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError(f"verifying the export needs onnxruntime: {_INSTALL_HINT}") from exc
    size = model.config.preprocess.image_size
    # 5 images for a dynamic graph: a batch size the trace never saw.
    x = model.normalize(torch.from_numpy(_probe_images(batch_size or 5, size)).to(model.device))
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
