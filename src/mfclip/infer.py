"""Detection for users: images, arrays, tensors, files, folders and videos -> typed results.

``Detector`` wraps a trained model with its stored decision threshold and preprocessing. Files
are decoded (and faces cropped) in worker processes, so the model does not wait on I/O; a file
that cannot be read becomes a result with its ``error`` set, never an exception mid-run.
Boxes are reported in the coordinates of the original image (or video frame).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .preprocess.decode import ImageDecodeError, load_image
from .data.media import is_video, walk_media
from .data.transforms import build_eval_transform
from .model.mfclip import MFCLIP, CheckpointError
from .version import __version__

__all__ = ["Detection", "Detector", "DetectorStats", "expand_inputs"]

log = logging.getLogger(__name__)

_FILES_PER_MESSAGE = 4

ImageLike = Image.Image | np.ndarray | torch.Tensor | str | Path


@dataclass
class Detection:
    """One result row: an image, a video (mean of its frames), or one frame of a video."""

    source: str
    fake_prob: float | None
    label: str | None
    threshold: float
    kind: str = "image"
    frame: int | None = None
    frames: int | None = None
    face_box: list[int] | None = None
    patch_box: list[int] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DetectorStats:
    """Where the last ``detect_paths`` run spent its time (the input-pipeline check)."""

    units: int = 0
    images: int = 0
    batches: int = 0
    total_s: float = 0.0
    wait_s: float = 0.0
    model_s: float = 0.0

    @property
    def wait_fraction(self) -> float:
        return self.wait_s / self.total_s if self.total_s > 0 else 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.total_s if self.total_s > 0 else 0.0


@dataclass
class _Sample:
    """A prepared model input and how to map its coordinates back to the source."""

    pixels: np.ndarray  # uint8 (S, S, 3): a quarter of float32's bytes between processes
    offset: tuple[float, float]
    scale: float
    crop: tuple[int, int]
    face_box: list[int] | None = None
    frame: int | None = None
    rgb: np.ndarray | None = field(default=None, repr=False)


@dataclass
class _Unit:
    """What a worker returns for one input: its samples, or the reason it failed."""

    source: str
    kind: str
    samples: list[_Sample]
    error: str | None = None


class _Preparer:
    """Decode-side work (face crop, resize, crop), for decoding threads or worker processes.

    It stops at uint8 pixels: normalising is done once per batch (:meth:`batch`), which cuts
    the decoding CPU time per image by about a third. Face detectors are built lazily, one per
    thread (OpenCV's detectors are not safe to share between threads), and are not pickled.
    """

    def __init__(self, model: MFCLIP, faces: bool, margin: float, detector: str) -> None:
        self.pre = model.config.preprocess
        self.transform = build_eval_transform(self.pre)
        self.faces = faces
        self.margin = margin
        self.detector_spec = detector
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _face(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int], list[int]] | None:
        from .data.faces import build_detector, square_region

        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = build_detector(self.detector_spec)
        boxes = detector.detect(rgb)
        if not boxes:
            return None
        box = max(boxes, key=lambda b: b.area)
        h, w = rgb.shape[:2]
        x0, y0, side = square_region(box, self.margin, w, h)
        xs, ys = max(x0, 0), max(y0, 0)
        crop = np.zeros((side, side, 3), dtype=np.uint8)
        part = rgb[ys : min(y0 + side, h), xs : min(x0 + side, w)]
        crop[ys - y0 : ys - y0 + part.shape[0], xs - x0 : xs - x0 + part.shape[1]] = part
        face_box = [round(box.x), round(box.y), round(box.x + box.w), round(box.y + box.h)]
        return crop, (x0, y0), face_box

    def prepare(
        self, image: Image.Image | np.ndarray, frame: int | None = None, keep_rgb: bool = False
    ) -> _Sample:
        """RGB image (PIL or uint8 array) -> model input crop plus the geometry to map boxes."""
        origin, face_box = (0, 0), None
        source = np.asarray(image) if keep_rgb or self.faces else None
        if self.faces:
            found = self._face(source)
            if found is None:
                raise ValueError("no face found")
            crop, origin, face_box = found
            image = Image.fromarray(crop)
        elif isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        w, h = image.size
        scale = self.pre.resize / min(w, h)
        new_w = self.pre.resize if w <= h else int(self.pre.resize * w / h)
        new_h = self.pre.resize if h < w else int(self.pre.resize * h / w)
        crop = ((new_w - self.pre.image_size) // 2, (new_h - self.pre.image_size) // 2)
        pixels = self.transform.pixels(image)
        offset = (float(origin[0]), float(origin[1]))
        return _Sample(pixels, offset, scale, crop, face_box, frame, source if keep_rgb else None)

    def batch(self, samples: Sequence[_Sample], device: torch.device) -> torch.Tensor:
        """Stack the uint8 crops, move them (4x fewer bytes than float32), normalise there."""
        pixels = torch.from_numpy(np.stack([s.pixels for s in samples])).to(device)
        return self.transform.to_batch(pixels)


class _PathDataset(Dataset):
    """Each item is one input file: an image (one sample) or a video (sampled frames)."""

    def __init__(self, paths: Sequence[str], preparer: _Preparer, frames: int) -> None:
        self.paths = list(paths)
        self.preparer = preparer
        self.frames = frames

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> _Unit:
        path = self.paths[index]
        if is_video(path):
            return self._video(path)
        try:
            return _Unit(path, "image", [self.preparer.prepare(load_image(path))])
        except ImageDecodeError as exc:
            return _Unit(path, "image", [], exc.reason)
        except (ValueError, OSError) as exc:
            return _Unit(path, "image", [], str(exc))

    def _video(self, path: str) -> _Unit:
        from .data.faces.video import VideoDecodeError, read_frames

        samples, skipped = [], 0
        try:
            for index, rgb in read_frames(path, self.frames):
                try:
                    samples.append(self.preparer.prepare(rgb, frame=index))
                except ValueError:
                    skipped += 1
        except (VideoDecodeError, OSError) as exc:
            return _Unit(path, "video", [], str(exc))
        if not samples:
            reason = "no face found in any sampled frame" if skipped else "no frame could be read"
            return _Unit(path, "video", [], reason)
        return _Unit(path, "video", samples)


def _decoded(dataset: _PathDataset, workers: int, mode: str, ahead: int) -> Iterator[_Unit]:
    """The dataset's units in order, decoded up to ``ahead`` files ahead of the consumer."""
    if mode not in ("thread", "process"):
        raise ValueError(f"decode must be 'thread' or 'process', got {mode!r}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        return (dataset[i] for i in range(len(dataset)))
    if mode == "thread":
        return _decoded_by_threads(dataset, workers, max(ahead, workers))
    return _decoded_by_processes(dataset, workers, ahead)


def _decoded_by_threads(dataset: _PathDataset, workers: int, ahead: int) -> Iterator[_Unit]:
    queue: deque[Future[_Unit]] = deque()
    executor = ThreadPoolExecutor(workers, thread_name_prefix="mfclip-decode")
    try:
        for index in range(len(dataset)):
            queue.append(executor.submit(dataset.__getitem__, index))
            if len(queue) >= ahead:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _decoded_by_processes(dataset: _PathDataset, workers: int, ahead: int) -> Iterator[_Unit]:
    # A few files per message: fewer queue round trips per image.
    chunk = max(1, min(_FILES_PER_MESSAGE, ahead // 2))
    loader = DataLoader(
        dataset,
        batch_size=chunk,
        collate_fn=list,
        num_workers=workers,
        prefetch_factor=max(2, math.ceil(ahead / (chunk * workers))),
        persistent_workers=False,
    )
    for units in loader:
        yield from units


def expand_inputs(inputs: Iterable[str | Path]) -> list[str]:
    """Files, folders (recursive, images and videos) and glob patterns -> a sorted file list.

    A name that matches nothing is kept, so that it is reported as an error row.
    """
    import glob

    out: list[str] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            out.extend(str(p) for p in walk_media(path, videos=True))
        elif any(ch in text for ch in "*?[") and not path.exists():
            matches = sorted(glob.glob(text, recursive=True))
            out.extend(m for m in matches if Path(m).is_file())
            if not matches:
                out.append(text)
        else:
            out.append(text)
    return out


def _to_rgb(image: ImageLike) -> np.ndarray:
    """PIL image, HxW(x3/4) array, (3,H,W) tensor in [0,1] or uint8, or a path -> RGB uint8."""
    if isinstance(image, (str, Path)):
        return np.asarray(load_image(image))
    if isinstance(image, Image.Image):
        from .preprocess.decode import to_rgb

        return np.asarray(to_rgb(image))
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"tensor images must be (3, H, W) or (1, H, W), got {tuple(t.shape)}")
        if t.dtype.is_floating_point:
            t = (t.clamp(0, 1) * 255).round()
        image = t.to(torch.uint8).permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.max() <= 1.0:
                arr = arr * 255.0
            arr = np.clip(np.round(arr), 0, 255).astype(np.uint8)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise ValueError(f"array images must be HxW, HxWx3 or HxWx4, got {arr.shape}")
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        return np.ascontiguousarray(arr[..., :3])
    raise TypeError(f"unsupported image type {type(image).__name__}")


class Detector:
    """A trained MFCLIP model ready for images, folders and videos.

    ``Detector.from_pretrained(dir_or_run_or_hub_id)``, then ``det(image_or_path_or_list)``.
    """

    def __init__(
        self,
        model: MFCLIP,
        device: str = "auto",
        faces: bool = False,
        margin: float = 1.3,
        frames: int = 16,
        face_detector: str = "haar",
        threshold: float | None = None,
    ) -> None:
        from .train.distributed import pick_device

        self.model = model.to(pick_device(device)).eval()
        self.threshold = float(threshold if threshold is not None else model.threshold)
        self.faces = faces
        self.frames = frames
        self.preparer = _Preparer(model, faces, margin, face_detector)
        self.stats = DetectorStats()

    @classmethod
    def from_pretrained(cls, source: str | Path, **kwargs: Any) -> Detector:
        """A model directory, a training run folder (its best checkpoint), or a hub repo id."""
        from .train.checkpoint import resolve_model_dir

        path = Path(source)
        if path.exists():
            return cls(MFCLIP.from_pretrained(resolve_model_dir(path)), **kwargs)
        try:
            from huggingface_hub import snapshot_download

            local = snapshot_download(str(source))
        except Exception as exc:
            raise CheckpointError(
                f"'{source}' is not a local model directory or run folder, and could not be "
                f"fetched from the Hugging Face Hub ({type(exc).__name__}: {exc})"
            ) from exc
        return cls(MFCLIP.from_pretrained(local), **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def info(self) -> dict[str, Any]:
        """What a service reports about its model."""
        cfg = self.model.config
        return {
            "name": cfg.name,
            "mfclip_version": __version__,
            "variant": cfg.variant,
            "backbone": cfg.backbone.name,
            "threshold": self.threshold,
            "threshold_rule": self.model.training_info.get("threshold_rule", "default 0.5"),
            "preprocessing": asdict(cfg.preprocess),
            "faces": self.faces,
            "validation": self.model.training_info.get("validation"),
        }

    # ------------------------------------------------------------------ scoring
    def _label(self, prob: float) -> str:
        return "fake" if prob >= self.threshold else "real"

    def _patch_box(self, sample: _Sample, box: torch.Tensor | None) -> list[int] | None:
        if box is None:
            return None
        x0, y0, x1, y1 = (float(v) for v in box.tolist())
        cx, cy = sample.crop
        ox, oy = sample.offset
        s = sample.scale
        return [
            round(ox + (x0 + cx) / s),
            round(oy + (y0 + cy) / s),
            round(ox + (x1 + cx) / s),
            round(oy + (y1 + cy) / s),
        ]

    @torch.no_grad()
    def _run(self, samples: list[_Sample]) -> list[tuple[float, list[int] | None]]:
        pred = self.model.predict(self.preparer.batch(samples, self.device))
        probs = pred.fake_prob.float().cpu().tolist()
        boxes = pred.boxes.cpu() if pred.boxes is not None else [None] * len(samples)
        return [(p, self._patch_box(s, b)) for p, s, b in zip(probs, samples, boxes, strict=True)]

    def __call__(self, inputs: ImageLike | Sequence[ImageLike]) -> Detection | list[Detection]:
        """Score one image (or a list): PIL images, arrays, tensors or file paths."""
        single = not isinstance(inputs, (list, tuple))
        items = [inputs] if single else list(inputs)
        results: list[Detection | None] = [None] * len(items)
        prepared: list[tuple[int, _Sample]] = []
        for i, item in enumerate(items):
            source = str(item) if isinstance(item, (str, Path)) else f"<{type(item).__name__}>"
            try:
                prepared.append((i, self.preparer.prepare(_to_rgb(item))))
            except (ValueError, OSError) as exc:
                reason = exc.reason if isinstance(exc, ImageDecodeError) else str(exc)
                results[i] = Detection(source, None, None, self.threshold, error=reason)
        for start in range(0, len(prepared), 32):
            chunk = prepared[start : start + 32]
            for (i, sample), (prob, box) in zip(
                chunk, self._run([s for _, s in chunk]), strict=True
            ):
                item = items[i]
                source = str(item) if isinstance(item, (str, Path)) else f"<{type(item).__name__}>"
                results[i] = Detection(
                    source, prob, self._label(prob), self.threshold,
                    face_box=sample.face_box, patch_box=box,
                )  # fmt: skip
        return results[0] if single else results  # type: ignore[return-value]

    def detect_paths(
        self,
        paths: Sequence[str | Path],
        batch_size: int = 32,
        workers: int = 2,
        per_frame: bool = False,
        progress: bool = False,
        decode: str = "thread",
    ) -> Iterator[Detection]:
        """Score files (images and videos) in input order, decoding ahead in ``workers``.

        ``decode="thread"`` (default) decodes in threads of this process: Pillow and OpenCV
        release the GIL, and nothing is copied between processes. ``"process"`` uses worker
        processes instead (for a face detector that holds the GIL, or to isolate crashing
        decoders). ``workers=0`` decodes in the calling thread. Videos yield one row with the
        mean of their sampled frames' probabilities (and, with ``per_frame``, one row per frame
        before it). ``self.stats`` records where time went.
        """
        from tqdm.auto import tqdm

        paths = [str(p) for p in paths]
        units = _decoded(
            _PathDataset(paths, self.preparer, self.frames), workers, decode, 2 * batch_size
        )
        self.stats = stats = DetectorStats()
        started = time.perf_counter()
        pending: list[tuple[_Unit, list[tuple[float, list[int] | None]]]] = []
        buffer: list[tuple[int, _Sample]] = []
        bar = tqdm(total=len(paths), disable=not progress, unit="file", desc="detect")

        def flush() -> Iterator[Detection]:
            if buffer:
                tick = time.perf_counter()
                scored = self._run([s for _, s in buffer])
                stats.model_s += time.perf_counter() - tick
                for (slot, _), result in zip(buffer, scored, strict=True):
                    pending[slot][1].append(result)
                stats.images += len(buffer)
                stats.batches += 1
                buffer.clear()
            while pending and len(pending[0][1]) == len(pending[0][0].samples):
                unit, scored_unit = pending.pop(0)
                bar.update(1)
                yield from self._rows(unit, scored_unit, per_frame)

        # The first batches are small (4, 8, 16, ...): the model starts while the workers are
        # still filling their queues, instead of idling until a full batch has been decoded.
        first_batch = max(1, min(4, batch_size))
        while True:
            tick = time.perf_counter()
            unit = next(units, None)
            stats.wait_s += time.perf_counter() - tick
            if unit is None:
                break
            stats.units += 1
            pending.append((unit, []))
            for sample in unit.samples:
                buffer.append((len(pending) - 1, sample))
            if len(buffer) >= min(batch_size, first_batch << stats.batches):
                yield from flush()
        yield from flush()
        bar.close()
        stats.total_s = time.perf_counter() - started

    def _rows(
        self, unit: _Unit, scored: list[tuple[float, list[int] | None]], per_frame: bool
    ) -> Iterator[Detection]:
        if unit.error is not None:
            yield Detection(
                unit.source, None, None, self.threshold, kind=unit.kind, error=unit.error
            )
            return
        if unit.kind == "image":
            (prob, box), sample = scored[0], unit.samples[0]
            yield Detection(
                unit.source, prob, self._label(prob), self.threshold,
                face_box=sample.face_box, patch_box=box,
            )  # fmt: skip
            return
        if per_frame:
            for (prob, box), sample in zip(scored, unit.samples, strict=True):
                yield Detection(
                    unit.source, prob, self._label(prob), self.threshold, kind="frame",
                    frame=sample.frame, face_box=sample.face_box, patch_box=box,
                )  # fmt: skip
        mean = float(np.mean([p for p, _ in scored]))
        yield Detection(
            unit.source, mean, self._label(mean), self.threshold, kind="video", frames=len(scored)
        )

    # ------------------------------------------------------------------ explanations
    def explain(self, image: ImageLike) -> Any:
        """Verdict, face box, richest patch, its SRM noise map and a relevance heat-map."""
        from .explain import explain_sample

        sample = self.preparer.prepare(_to_rgb(image), keep_rgb=True)
        return explain_sample(self, sample)
