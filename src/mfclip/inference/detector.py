"""Detection for users: images, arrays, tensors, bytes, files, folders and videos -> results.

``Detector`` wraps a trained model with its stored decision threshold and preprocessing. Files
are decoded (and faces cropped) ahead of the model in threads or processes
(:mod:`~mfclip.inference.pipeline`); every score goes through the one scoring loop
(:class:`~mfclip.inference.scoring.Scorer`). Boxes are reported in the pixels of the original
image (or video frame).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..loading import load_model
from ..model.mfclip import MFCLIP
from ..operating import OperatingPoint
from ..version import __version__
from .inputs import ImageLike, describe, to_rgb_image
from .pipeline import PathDecoder, decoded
from .prepare import FaceSettings, Preparer
from .sample import Sample, Unit
from .scoring import Scorer

__all__ = ["Detection", "Detector", "DetectorStats"]

log = logging.getLogger(__name__)


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
    #: The uncalibrated softmax p(fake) (``fake_prob`` is calibrated when the model is).
    raw_prob: float | None = None
    #: The verdict in plain words: the rule behind it, and why when it may surprise.
    reason: str | None = None

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


#: ``(calibrated p(fake), raw p(fake), richest-patch box in source pixels)`` per sample.
Scored = tuple[float, float, list[int] | None]


class Detector:
    """A trained MFCLIP model ready for images, folders and videos.

    ``Detector.from_pretrained(dir_or_run_or_hub_id)``, then ``det(image_or_path_or_list)``.
    With ``faces=True`` the largest face is cropped exactly as ``mfclip data faces`` crops it
    (``margin``, ``face_size``, ``face_detector``) before scoring.
    """

    def __init__(
        self,
        model: MFCLIP,
        device: str = "auto",
        faces: bool = False,
        margin: float = FaceSettings.margin,
        frames: int = 16,
        face_detector: str = FaceSettings.detector,
        threshold: float | None = None,
        face_size: int = FaceSettings.size,
        amp: str = "none",
    ) -> None:
        self.model = load_model(model, device)
        #: Threshold, rule and uncertain band stored with the model (``threshold`` overrides).
        self.operating_point = OperatingPoint.from_training_info(model.training_info, threshold)
        self.threshold = self.operating_point.threshold
        self.faces = faces
        self.frames = frames
        settings = FaceSettings(face_detector, margin, face_size) if faces else None
        self.preparer = Preparer(model.config.preprocess, settings)
        self.scorer = Scorer(self.model, amp=amp)
        self.stats = DetectorStats()

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, **kwargs: Any) -> Detector:
        """A model folder, a training run folder (its best checkpoint), or a hub repo id."""
        return cls(load_model(source), **kwargs)

    @property
    def device(self) -> Any:
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
            "threshold_rule": self.operating_point.rule,
            "operating_point": self.operating_point.to_dict(),
            "preprocessing": asdict(cfg.preprocess),
            "faces": self.faces,
            "validation": self.model.training_info.get("validation"),
        }

    # ------------------------------------------------------------------ scoring
    def label(self, prob: float) -> str:
        """``real``, ``fake`` or (inside the model's uncertain band) ``uncertain``."""
        return self.operating_point.label(prob)

    def _detection(self, source: str, scored: Scored, **fields: Any) -> Detection:
        prob, raw, box = scored
        return Detection(
            source, prob, self.label(prob), self.threshold, patch_box=box, raw_prob=raw,
            reason=self.operating_point.describe(prob), **fields,
        )  # fmt: skip

    def score_samples(self, samples: Sequence[Sample]) -> list[Scored]:
        """Calibrated and raw probability, and richest-patch box (source pixels), per sample."""
        scores = self.scorer(Preparer.batch(samples, self.device))
        boxes = scores.boxes if scores.boxes is not None else [None] * len(samples)
        return [
            (float(p), float(r), None if b is None else s.placement.to_source(b.tolist()))
            for p, r, s, b in zip(
                scores.fake_prob.tolist(), scores.raw_prob.tolist(), samples, boxes, strict=True
            )
        ]

    def prepare(self, image: ImageLike, keep_rgb: bool = False) -> Sample:
        """Decode/convert one input and make its model crop."""
        return self.preparer.prepare(to_rgb_image(image), keep_rgb=keep_rgb)

    def __call__(self, inputs: ImageLike | Sequence[ImageLike]) -> Detection | list[Detection]:
        """Score one input (or a list): PIL images, arrays, tensors, paths, bytes, streams."""
        single = not isinstance(inputs, (list, tuple))
        items = [inputs] if single else list(inputs)
        results: list[Detection | None] = [None] * len(items)
        prepared: list[tuple[int, Sample]] = []
        for i, item in enumerate(items):
            try:
                prepared.append((i, self.prepare(item)))
            except (ValueError, OSError) as exc:
                reason = getattr(exc, "reason", None) or str(exc)
                results[i] = Detection(describe(item), None, None, self.threshold, error=reason)
        for start in range(0, len(prepared), 32):
            chunk = prepared[start : start + 32]
            scored = self.score_samples([s for _, s in chunk])
            for (i, sample), result in zip(chunk, scored, strict=True):
                results[i] = self._detection(describe(items[i]), result, face_box=sample.face_box)
        return results[0] if single else results  # type: ignore[return-value]

    def detect_paths(
        self,
        paths: Iterable[str | Path],
        batch_size: int = 32,
        workers: int = 2,
        per_frame: bool = False,
        progress: bool = False,
        decode: str = "thread",
    ) -> Iterator[Detection]:
        """Score files (images and videos) in input order, decoding ahead in ``workers``.

        ``decode="thread"`` (default) decodes in threads of this process; ``"process"`` in
        worker processes; ``workers=0`` in the calling thread. Videos yield one row with the
        mean of their sampled frames' probabilities (and, with ``per_frame``, one row per frame
        before it). ``self.stats`` records where time went.

        ``paths`` may be a stream (a generator over a list file): it is read only
        ``2 * batch_size`` files ahead of the rows yielded, so memory stays flat however many
        inputs there are; the progress bar then shows the count and rate without a total.
        """
        from tqdm.auto import tqdm

        total = len(paths) if isinstance(paths, Sequence) else None
        decoder = PathDecoder(self.preparer, self.frames)
        units = decoded(decoder, (str(p) for p in paths), workers, decode, 2 * batch_size)
        self.stats = stats = DetectorStats()
        started = time.perf_counter()
        pending: list[tuple[Unit, list[Scored]]] = []
        buffer: list[tuple[int, Sample]] = []
        bar = tqdm(total=total, disable=not progress, unit="file", desc="detect")

        def flush() -> Iterator[Detection]:
            if buffer:
                tick = time.perf_counter()
                scored = self.score_samples([s for _, s in buffer])
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

    def _rows(self, unit: Unit, scored: list[Scored], per_frame: bool) -> Iterator[Detection]:
        if unit.error is not None:
            yield Detection(
                unit.source, None, None, self.threshold, kind=unit.kind, error=unit.error
            )
            return
        if unit.kind == "image":
            yield self._detection(unit.source, scored[0], face_box=unit.samples[0].face_box)
            return
        if per_frame:
            for result, sample in zip(scored, unit.samples, strict=True):
                yield self._detection(
                    unit.source, result, kind="frame", frame=sample.frame, face_box=sample.face_box
                )
        mean = float(np.mean([p for p, _, _ in scored]))
        raw = float(np.mean([r for _, r, _ in scored]))
        yield self._detection(unit.source, (mean, raw, None), kind="video", frames=len(scored))

    # ------------------------------------------------------------------ explanations
    def explain(self, image: ImageLike) -> Any:
        """Verdict, face box, richest patch, its SRM noise map and a relevance heat-map."""
        from .explain import explain_sample

        return explain_sample(self.model, self.prepare(image, keep_rgb=True), self.operating_point)
