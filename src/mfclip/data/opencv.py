"""OpenCV, imported in one place, once, under Python's module lock.

``import cv2`` is not safe to race: OpenCV's loader briefly puts its native extension in
``sys.modules["cv2"]`` while it swaps in the Python package, and a second thread whose first
``import cv2`` lands in that window gets the bare extension, without ``cv2.data`` (seen as
``AttributeError: module 'cv2' has no attribute 'data'`` when several decoding threads built
their face detectors at once). Every mfclip module takes OpenCV from :func:`cv2` here instead:
the first call imports this module's dependency under its lock, so later callers wait for a
complete package, and the bundled cascades are read from the ``cv2.data`` submodule itself.
"""

from __future__ import annotations

import threading
from types import ModuleType

__all__ = ["cascade_dir", "cv2"]

_LOCK = threading.Lock()
_MODULE: ModuleType | None = None


def cv2() -> ModuleType:
    """The fully initialised ``cv2`` package (imported on first use, thread-safe)."""
    global _MODULE
    if _MODULE is None:
        with _LOCK:
            if _MODULE is None:
                import cv2 as module
                import cv2.data

                _MODULE = module
    return _MODULE


def cascade_dir() -> str:
    """Folder of the Haar/LBP cascades bundled with opencv-python-headless."""
    import sys

    cv2()
    return sys.modules["cv2.data"].haarcascades
