"""Files -> prepared samples, decoded ahead of the model in threads or worker processes.

Threads by default: Pillow and OpenCV release the GIL, and nothing is copied between
processes. Worker processes (``mode="process"``) suit a face detector that holds the GIL, or
isolate crashing decoders. A file that cannot be read becomes a :class:`Unit` with its
``error`` set, never an exception mid-run.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from torch.utils.data import DataLoader, Dataset

from ..data.media import is_video
from ..errors import ImageDecodeError, VideoDecodeError
from ..preprocess.decode import DEFAULT_MAX_PIXELS, load_image
from .prepare import NoFaceError, Preparer
from .sample import Unit

__all__ = ["PathDataset", "decoded"]

_FILES_PER_MESSAGE = 4


class PathDataset(Dataset):
    """Each item is one input file: an image (one sample) or a video (sampled frames)."""

    def __init__(
        self,
        paths: Sequence[str],
        preparer: Preparer,
        frames: int,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.paths = list(paths)
        self.preparer = preparer
        self.frames = frames
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Unit:
        path = self.paths[index]
        if is_video(path):
            return self._video(path)
        try:
            image = load_image(path, max_pixels=self.max_pixels)
            return Unit(path, "image", [self.preparer.prepare(image)])
        except ImageDecodeError as exc:
            return Unit(path, "image", [], exc.reason)
        except (ValueError, OSError) as exc:
            return Unit(path, "image", [], str(exc))

    def _video(self, path: str) -> Unit:
        from ..data.faces.video import read_frames

        samples, skipped = [], 0
        try:
            for index, rgb in read_frames(path, self.frames):
                try:
                    samples.append(self.preparer.prepare(rgb, frame=index))
                except NoFaceError:
                    skipped += 1
        except (VideoDecodeError, OSError) as exc:
            return Unit(path, "video", [], str(exc))
        if not samples:
            reason = "no face found in any sampled frame" if skipped else "no frame could be read"
            return Unit(path, "video", [], reason)
        return Unit(path, "video", samples)


def decoded(dataset: PathDataset, workers: int, mode: str, ahead: int) -> Iterator[Unit]:
    """The dataset's units in order, decoded up to ``ahead`` files ahead of the consumer."""
    if mode not in ("thread", "process"):
        raise ValueError(f"decode must be 'thread' or 'process', got {mode!r}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        return (dataset[i] for i in range(len(dataset)))
    if mode == "thread":
        return _by_threads(dataset, workers, max(ahead, workers))
    return _by_processes(dataset, workers, ahead)


def _by_threads(dataset: PathDataset, workers: int, ahead: int) -> Iterator[Unit]:
    queue: deque[Future[Unit]] = deque()
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


def _by_processes(dataset: PathDataset, workers: int, ahead: int) -> Iterator[Unit]:
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
