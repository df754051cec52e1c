"""Detect and crop faces for every row of a manifest (images and videos), on all cores.

Each input row yields output rows: one per cropped face (``status=ok``), or one row saying
why nothing was cropped (``status=no_face`` or ``status=error`` with ``reason``). Nothing is
skipped silently and no file can stop the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ...preprocess.decode import ImageDecodeError, load_image
from .. import opencv
from ..manifest import resolve_path
from ..media import is_video
from ..records import Record
from .crop import DEFAULT_MARGIN, DEFAULT_SIZE, crop_face, largest_face
from .detector import FaceDetector, build_detector
from .video import VideoDecodeError, read_frames

__all__ = ["FaceOptions", "extract_faces"]


@dataclass
class FaceOptions:
    """How faces are found and saved."""

    margin: float = DEFAULT_MARGIN
    size: int = DEFAULT_SIZE
    #: Frames sampled uniformly per video.
    frames: int = 32
    detector: str = "haar"
    detector_kwargs: dict[str, Any] = field(default_factory=dict)
    #: ``png`` (lossless, the default: no new compression traces) or ``jpg``.
    image_format: str = "png"


@dataclass
class _Job:
    source: str
    record: Record
    stem: str


_STATE: dict[str, Any] = {}


def _init_worker(options: FaceOptions, out_dir: str) -> None:
    import multiprocessing

    cv2 = opencv.cv2()

    if multiprocessing.current_process().name != "MainProcess":
        cv2.setNumThreads(1)  # parallelism comes from the processes
    _STATE["options"] = options
    _STATE["out_dir"] = Path(out_dir)
    _STATE["detector"] = build_detector(options.detector, **options.detector_kwargs)


def _save(array: np.ndarray, path: Path, image_format: str) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    params = {"quality": 95} if image_format in ("jpg", "jpeg") else {}
    Image.fromarray(array).save(path, **params)


def _face_row(job: _Job, image: np.ndarray, frame: int | None, detector: FaceDetector) -> Record:
    options: FaceOptions = _STATE["options"]
    base = {"source": job.source, "detector": detector.name}
    if frame is not None:
        base["frame"] = str(frame)
    group = job.record.group or job.stem
    box = largest_face(detector.detect(image))
    if box is None:
        where = f" in frame {frame}" if frame is not None else ""
        return job.record.with_(
            path=job.source,
            group=group,
            extra={
                **job.record.extra,
                **base,
                "status": "no_face",
                "reason": f"no face detected{where}",
            },
        )
    stem = f"{job.stem}/{frame:06d}" if frame is not None else job.stem
    out = _STATE["out_dir"] / f"{stem}.{options.image_format}"
    _save(crop_face(image, box, options.margin, options.size).pixels, out, options.image_format)
    box_text = ",".join(str(round(v, 1)) for v in (box.x, box.y, box.w, box.h))
    extra = {**job.record.extra, **base, "status": "ok", "reason": "", "box": box_text}
    return job.record.with_(path=str(out), group=group, extra=extra)


def _process(job: _Job) -> list[Record]:
    detector: FaceDetector = _STATE["detector"]
    options: FaceOptions = _STATE["options"]

    def failure(status: str, reason: str) -> list[Record]:
        extra = {**job.record.extra, "source": job.source, "status": status, "reason": reason}
        return [job.record.with_(path=job.source, extra=extra)]

    try:
        if is_video(job.source):
            rows = [
                _face_row(job, f, i, detector) for i, f in read_frames(job.source, options.frames)
            ]
            return rows or failure("error", "no frame could be decoded")
        image = np.asarray(load_image(job.source))
        return [_face_row(job, image, None, detector)]
    except ImageDecodeError as exc:
        return failure("error", exc.reason)
    except VideoDecodeError as exc:
        return failure("error", str(exc))
    except Exception as exc:  # one bad file must not end a long run
        return failure("error", f"{type(exc).__name__}: {exc}")


def _stem(record: Record, source: Path, root: Path) -> str:
    """Output name mirroring the input layout (never escaping the output folder)."""
    path = PurePosixPath(Path(record.path).as_posix())
    if path.is_absolute():
        try:
            path = PurePosixPath(source.resolve().relative_to(root.resolve()).as_posix())
        except ValueError:
            path = PurePosixPath(*path.parts[1:])
    parts = [p for p in path.with_suffix("").parts if p not in ("..", ".", "")]
    return "/".join(parts) or source.stem


def extract_faces(
    records: Sequence[Record],
    root: str | Path,
    out_dir: str | Path,
    options: FaceOptions | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> list[Record]:
    """Crop faces for ``records`` (paths relative to ``root``) into ``out_dir``.

    Returns the output manifest rows, including ``no_face``/``error`` rows with their reason.
    """
    from ..parallel import parallel_map

    options = options or FaceOptions()
    if options.margin < 1.0 or options.size < 8 or options.frames < 1:
        raise ValueError("faces: need margin >= 1, size >= 8 and frames >= 1")
    root, out_dir = Path(root), Path(out_dir)
    build_detector(options.detector, **options.detector_kwargs)  # fail fast in the parent
    jobs = []
    for record in records:
        source = resolve_path(record.path, root).absolute()
        jobs.append(_Job(str(source), record, _stem(record, source, root)))
    out: list[Record] = []
    for rows in parallel_map(
        _process,
        jobs,
        workers,
        desc="faces",
        progress=progress,
        initializer=_init_worker,
        initargs=(options, str(out_dir)),
    ):
        out.extend(rows)
    return out
