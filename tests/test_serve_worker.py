"""The service's model worker: micro-batching never blocks the event loop; bad images stay alone."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the 'serve' extra (fastapi) is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the 'serve' extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed (test extra)")

from mfclip.serve.app import create_app  # noqa: E402

from .test_serve import png_bytes, post, serve_in_thread  # noqa: E402


# ---------------------------------------------------------------------------- worker behaviour
class _FakeDetection:
    def __init__(self, prob: float, no_face: bool = False) -> None:
        self.prob = None if no_face else prob
        self.error = "no face found" if no_face else None

    def to_dict(self) -> dict[str, Any]:
        label = None if self.prob is None else "fake" if self.prob >= 0.5 else "real"
        row = {"source": "<Image>", "fake_prob": self.prob, "label": label, "threshold": 0.5}
        return {**row, "kind": "image", "face_box": None, "patch_box": None, "error": self.error}


class _FakeDetector:
    """Slow on purpose; refuses 13-pixel-wide images, so error isolation can be seen."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.threads: set[str] = set()

    def __call__(self, images: list[Image.Image]) -> list[_FakeDetection]:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if any(im.width == 13 for im in images):
            raise RuntimeError("boom")
        return [_FakeDetection(im.width / 1000, im.width == 14) for im in images]

    def explain(self, image: Image.Image) -> Any:
        raise RuntimeError("no explanation here")

    def info(self) -> dict[str, Any]:
        return {"name": "fake", "threshold": 0.5}


def _wait_for(base: str, counter: str, value: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(f"{base}/healthz").json()[counter] != value:
        assert time.monotonic() < deadline, f"/healthz never showed {counter}={value}"
        time.sleep(0.02)


def test_inference_does_not_block_the_event_loop() -> None:
    fake = _FakeDetector(delay=1.0)
    app = create_app(fake, batch_size=1, max_wait_ms=0, max_queue=1)
    with serve_in_thread(app) as base, ThreadPoolExecutor(3) as pool:
        slow = pool.submit(post, base, png_bytes(100, 20))
        _wait_for(base, "running", 1)  # the first request is now on the model thread
        tick = time.monotonic()
        health = httpx.get(f"{base}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["running"] == 1
        assert time.monotonic() - tick < 0.5  # answered while the model is busy
        queued = pool.submit(post, base, png_bytes(200, 20))
        _wait_for(base, "queued", 1)  # the second waits in the queue (max_queue=1) ...
        busy = post(base, png_bytes(300, 20))
        assert busy.status_code == 503  # ... so a third is turned away, not lost
        assert busy.headers["retry-after"] == "1"
        assert slow.result().json()["fake_prob"] == pytest.approx(0.1)
        assert queued.result().json()["fake_prob"] == pytest.approx(0.2)
    assert len(fake.threads) == 1 and fake.threads.pop().startswith("mfclip-model")


def test_bad_image_does_not_fail_its_batch() -> None:
    fake = _FakeDetector(delay=0.0)
    app = create_app(fake, batch_size=2, max_wait_ms=5000)  # runs once both have arrived
    with serve_in_thread(app) as base, ThreadPoolExecutor(2) as pool:
        good = pool.submit(post, base, png_bytes(100, 20), params={"explain": "true"})
        bad = pool.submit(post, base, png_bytes(13, 20))
        good_r, bad_r = good.result(), bad.result()
        assert httpx.get(f"{base}/healthz").json()["largest_batch"] == 2  # the same batch
    assert good_r.status_code == 200
    assert good_r.json()["explanation_png"] is None
    assert "no explanation here" in good_r.json()["explanation_error"]
    assert bad_r.status_code == 500 and "boom" in bad_r.json()["detail"]


def test_pixel_limit_and_detection_errors() -> None:
    """A decompression bomb is refused before decoding; a row with an error is a 422."""
    app = create_app(_FakeDetector(delay=0.0), max_pixels=10_000)
    with serve_in_thread(app) as base:
        bomb = Image.new("L", (4000, 4000))  # 16 Mpx, a few KiB as PNG
        buf = io.BytesIO()
        bomb.save(buf, "PNG")
        r = post(base, buf.getvalue())
        assert r.status_code == 413 and "decompression bomb" in r.json()["detail"]
        r = post(base, png_bytes(14, 20))  # the fake's "no face found"
        assert r.status_code == 422
        assert r.json()["detail"] == "no face found"
        assert r.json()["result"]["source"] == "face.png"
        assert httpx.get(f"{base}/v1/model").json()["operating_point"] is None  # not a Detector
