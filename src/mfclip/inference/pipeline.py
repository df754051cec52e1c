"""Files -> prepared samples, decoded ahead of the model in threads or worker processes.

The paths come from any iterable (a list, or a stream of millions of lines): at most
``ahead`` of them are taken before their results are consumed, so memory does not grow with
the number of inputs.

Threads by default: Pillow and OpenCV release the GIL, and nothing is copied between
processes. Worker processes (``mode="process"``) suit a face detector that holds the GIL, or
isolate crashing decoders. A file that cannot be read becomes a :class:`Unit` with its
``error`` set, never an exception mid-run.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial

from ..data.media import is_video
from ..errors import ImageDecodeError, VideoDecodeError
from ..preprocess.decode import DEFAULT_MAX_PIXELS, load_image
from .prepare import NoFaceError, Preparer
from .sample import Unit

__all__ = ["PathDecoder", "decoded"]

_FILES_PER_MESSAGE = 4


class PathDecoder:
    """One input file -> a :class:`Unit`: an image (one sample) or a video (sampled frames)."""

    def __init__(
        self, preparer: Preparer, frames: int, max_pixels: int | None = DEFAULT_MAX_PIXELS
    ) -> None:
        self.preparer = preparer
        self.frames = frames
        self.max_pixels = max_pixels

    def __call__(self, path: str) -> Unit:
        if is_video(path):
            return self._video(path)
        try:
            image = load_image(path, max_pixels=self.max_pixels)
            return Unit(path, "image", [self.preparer.prepare(image)])
        except ImageDecodeError as exc:
            return Unit(path, "image", [], exc.reason)
        except (ValueError, OSError) as exc:
            return Unit(path, "image", [], str(exc))

    def many(self, paths: list[str]) -> list[Unit]:
        """Several files in one call: one message per few files between processes."""
        return [self(p) for p in paths]

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


def decoded(
    decoder: PathDecoder, paths: Iterable[str], workers: int, mode: str, ahead: int
) -> Iterator[Unit]:
    """Each path's unit in input order, decoded up to ``ahead`` files ahead of the consumer."""
    if mode not in ("thread", "process"):
        raise ValueError(f"decode must be 'thread' or 'process', got {mode!r}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        return map(decoder, paths)
    if mode == "thread":
        threads = partial(ThreadPoolExecutor, workers, thread_name_prefix="mfclip-decode")
        return _ahead(threads, decoder, iter(paths), 1, max(ahead, workers))
    # A few files per message: fewer round trips between processes per image.
    chunk = max(1, min(_FILES_PER_MESSAGE, ahead // 2))
    processes = partial(ProcessPoolExecutor, workers, initializer=_adopt, initargs=(decoder,))
    return _ahead(processes, _decode_here, iter(paths), chunk, max(ahead // chunk, 2 * workers))


def _ahead(
    start: Callable[[], Executor],
    decode: Callable[..., Unit | list[Unit]],
    paths: Iterator[str],
    chunk: int,
    in_flight: int,
) -> Iterator[Unit]:
    """Keep ``in_flight`` calls of ``decode`` queued (``chunk`` paths each); yield in order.

    The executor starts at the first ``next`` and stops (pending calls cancelled) when the
    consumer finishes or closes the generator.
    """
    executor = start()
    queue: deque[Future] = deque()
    try:
        while True:
            group = list(itertools.islice(paths, chunk))
            if group:
                queue.append(executor.submit(decode, group if chunk > 1 else group[0]))
            if queue and (len(queue) >= in_flight or not group):
                done = queue.popleft().result()
                yield from done if isinstance(done, list) else [done]
            elif not group:
                return
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


_WORKER_DECODER: PathDecoder | None = None


def _adopt(decoder: PathDecoder) -> None:
    """Worker-process start: keep the decoder (sent once, not with every file)."""
    global _WORKER_DECODER
    _WORKER_DECODER = decoder


def _decode_here(paths: list[str]) -> list[Unit]:
    if _WORKER_DECODER is None:
        raise RuntimeError("decoding worker process started without its decoder")
    return _WORKER_DECODER.many(paths)
