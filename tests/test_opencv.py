"""OpenCV is imported in one place, safely from many threads at once."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("cv2")

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mfclip"


def test_no_module_but_the_wrapper_imports_cv2():
    """A direct ``import cv2`` elsewhere could race OpenCV's loader (see mfclip.data.opencv)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "opencv.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(n == "cv2" or n.startswith("cv2.") for n in names):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, offenders


def test_first_use_from_many_threads_at_once():
    """16 threads build face detectors and crop at the same instant in a fresh interpreter."""
    code = textwrap.dedent(
        """
        import sys, threading
        import numpy as np
        assert "cv2" not in sys.modules
        from mfclip.data.faces.crop import crop_face
        from mfclip.data.faces.detector import FaceBox, build_detector
        barrier, errors = threading.Barrier(16), []
        def work():
            barrier.wait()
            try:
                build_detector("haar").detect(np.zeros((64, 64, 3), np.uint8))
                crop_face(np.zeros((64, 64, 3), np.uint8), FaceBox(8, 8, 32, 32), 1.3, 32)
            except Exception as exc:
                errors.append(repr(exc))
        threads = [threading.Thread(target=work) for _ in range(16)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print(len(errors), errors[:1])
        """
    )
    for _ in range(3):
        run = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("0 "), run.stdout
