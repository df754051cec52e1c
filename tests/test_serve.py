"""``mfclip serve``: the real server (uvicorn on a loopback port), limits, batching, safety."""

from __future__ import annotations

import base64
import http.client
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the 'serve' extra (fastapi) is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the 'serve' extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed (test extra)")

from mfclip.serve.app import MULTIPART_SLACK, create_app  # noqa: E402

LIMIT = 64 * 1024  # small, so that a too-large upload is cheap to send


# ---------------------------------------------------------------------------- helpers
@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run ``app`` on uvicorn in a background thread on a free loopback port; yield its URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the test server failed to start")
        if time.monotonic() > deadline:
            raise TimeoutError("the test server did not start within 30 s")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def png_bytes(width: int = 96, height: int = 80, seed: int = 0) -> bytes:
    """A noise PNG (incompressible, so its size is predictable: about w*h*3 bytes)."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def post(base: str, content: bytes, name: str = "face.png", **kwargs: Any) -> httpx.Response:
    files = {"file": (name, content, "image/png")}
    return httpx.post(f"{base}/v1/detect", files=files, timeout=60, **kwargs)


def banded_detector() -> tuple[Any, dict[str, bytes]]:
    """A calibrated tiny model with an uncertain band, and one image per verdict it gives.

    Platt scaling fitted on margins centred on 1 puts all probabilities near 0.1, so even the
    FAKE one is below 50 %: the case whose reason must say why.
    """
    import torch

    import mfclip
    from mfclip import Detector
    from mfclip.evaluate.fitting import apply_operating_point, fit_operating_point

    torch.manual_seed(0)
    model = mfclip.create_model("mfclip-tiny")
    labels = np.repeat([0, 1], 50)
    margins = np.random.default_rng(0).normal(2.0 * labels, 1.0)

    def fitted(rule: str, band: tuple[float, float] | None = None) -> Any:
        point = fit_operating_point(margins, labels, method="platt", rule=rule, band=band)
        return Detector(apply_operating_point(model, point), device="cpu")

    images = [png_bytes(seed=seed) for seed in range(6)]
    probs = [d.fake_prob for d in fitted("fixed")([Image.open(io.BytesIO(b)) for b in images])]
    low, mid, high = (int(i) for i in np.argsort(probs)[[0, 3, 5]])
    threshold = round(probs[mid], 4)
    gap = min(threshold - probs[low], probs[high] - threshold) / 2
    assert gap > 1e-3, f"the tiny model's probabilities are too close: {probs}"
    detector = fitted(f"fixed={threshold}", (threshold - gap, threshold + gap))
    return detector, {"real": images[low], "uncertain": images[mid], "fake": images[high]}


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import torch

    import mfclip
    from mfclip import Detector

    torch.manual_seed(0)
    model_dir = tmp_path_factory.mktemp("serve") / "model"
    mfclip.create_model("mfclip-tiny").save_pretrained(model_dir)
    return Detector.from_pretrained(model_dir, device="cpu")


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    return {"a": png_bytes(seed=1), "b": png_bytes(120, 90, seed=2)}


@pytest.fixture(scope="module")
def reference(detector: Any, images: dict[str, bytes]) -> dict[str, float]:
    """What the detector says directly, one image at a time."""
    return {k: detector(Image.open(io.BytesIO(v))).fake_prob for k, v in images.items()}


@pytest.fixture(scope="module")
def server(detector: Any) -> Iterator[str]:
    app = create_app(
        detector,
        max_upload_bytes=LIMIT,
        batch_size=8,
        max_wait_ms=30,
        allowed_hosts=["127.0.0.1", "localhost", "::1"],
    )
    with serve_in_thread(app) as base:
        yield base


# ---------------------------------------------------------------------------- detection
def test_detect_png(server: str, images: dict[str, bytes], reference: dict[str, float]) -> None:
    r = post(server, images["a"])
    assert r.status_code == 200, r.text
    row = r.json()
    keys = ("source", "fake_prob", "raw_prob", "label", "threshold", "reason", "face_box")
    assert {*keys, "patch_box", "error"} <= row.keys()
    assert row["source"] == "face.png"
    assert row["error"] is None and row["kind"] == "image"
    assert row["fake_prob"] == pytest.approx(reference["a"], abs=1e-5)
    assert row["label"] == ("fake" if row["fake_prob"] >= row["threshold"] else "real")
    assert row["reason"].startswith(f"{row['label'].upper()}: uncalibrated probability")
    assert len(row["patch_box"]) == 4
    assert "explanation_png" not in row
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("how", ["query", "form"])
def test_explain_returns_png(server: str, images: dict[str, bytes], how: str) -> None:
    if how == "query":
        r = post(server, images["a"], params={"explain": "true"})
    else:
        r = post(server, images["a"], data={"explain": "true"})
    assert r.status_code == 200, r.text
    row = r.json()
    assert row["explanation_error"] is None
    panel = Image.open(io.BytesIO(base64.b64decode(row["explanation_png"])))
    assert panel.format == "PNG"
    panel.load()
    assert panel.width > panel.height > 0


def test_concurrent_requests_are_batched(
    server: str, images: dict[str, bytes], reference: dict[str, float]
) -> None:
    before = httpx.get(f"{server}/healthz").json()
    keys = ["a" if i % 2 == 0 else "b" for i in range(20)]
    barrier = threading.Barrier(20)

    def one(key: str) -> tuple[str, int, dict[str, Any]]:
        barrier.wait()
        r = post(server, images[key], name=f"{key}.png")
        return key, r.status_code, r.json()

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, keys))
    assert [status for _, status, _ in results] == [200] * 20
    for key, _, row in results:
        assert row["source"] == f"{key}.png"
        assert row["fake_prob"] == pytest.approx(reference[key], abs=1e-5)  # no mix-ups
    after = httpx.get(f"{server}/healthz").json()
    assert after["requests"] - before["requests"] == 20
    assert after["batches"] - before["batches"] < 20  # some requests shared a model call
    assert after["largest_batch"] > 1


@pytest.fixture(scope="module")
def banded() -> tuple[Any, dict[str, bytes]]:
    return banded_detector()


def test_verdicts_follow_the_operating_point(banded: tuple[Any, dict[str, bytes]]) -> None:
    """REAL below the band, UNCERTAIN inside it, FAKE above, each with its reason."""
    detector, images = banded
    point = detector.operating_point
    with serve_in_thread(create_app(detector)) as base:
        rows = {want: post(base, data).json() for want, data in images.items()}
        info = httpx.get(f"{base}/v1/model").json()["operating_point"]
    for want, row in rows.items():
        assert row["label"] == want, row
        assert row["threshold"] == pytest.approx(point.threshold)
        assert row["reason"] == point.describe(row["fake_prob"])
        assert row["reason"].startswith(f"{want.upper()}: calibrated probability")
        assert abs(row["raw_prob"] - row["fake_prob"]) > 0.1  # the calibration moved it
    assert "have a person look" in rows["uncertain"]["reason"]
    assert rows["fake"]["fake_prob"] < 0.5 and "below 50 %" in rows["fake"]["reason"]
    assert info["band"] == pytest.approx(list(point.band))
    assert (info["calibration"], info["rule"]) == ("platt", point.rule)
    assert (info["fpr"], info["tpr"]) == pytest.approx((point.fpr, point.tpr))
    assert info["fitted_on"].startswith("the validation split (n=100")
    assert info["summary"] == point.summary() and "uncertain between" in info["summary"]


# ---------------------------------------------------------------------------- limits, errors
def test_too_large_by_content_length(server: str) -> None:
    r = post(server, os.urandom(LIMIT + MULTIPART_SLACK + 1024))
    assert r.status_code == 413
    assert "64 KiB" in r.json()["detail"]


def test_too_large_file_within_body_slack(server: str) -> None:
    """The body passes the early check, the file part itself is over the limit."""
    r = post(server, os.urandom(LIMIT + 1))
    assert r.status_code == 413


def test_too_large_chunked_is_stopped_while_reading(server: str) -> None:
    """No Content-Length (chunked): the cap applies to the bytes as they arrive."""
    boundary = "mfclip-test-boundary"
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=file; filename=x.png\r\n"
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(8):
            yield b"\0" * 32768
        yield f"\r\n--{boundary}--\r\n".encode()

    url = urlsplit(server)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    conn.request("POST", "/v1/detect", body=body(), headers=headers, encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413
    assert b"too large" in response.read()
    conn.close()


def test_text_file_is_415(server: str) -> None:
    r = httpx.post(
        f"{server}/v1/detect", files={"file": ("notes.png", b"hello, not an image\n", "image/png")}
    )
    assert r.status_code == 415
    assert "not an image" in r.json()["detail"]
    empty = httpx.post(f"{server}/v1/detect", files={"file": ("e.jpg", b"", "image/jpeg")})
    assert empty.status_code == 415


def test_malformed_requests_are_422(server: str) -> None:
    r = httpx.post(f"{server}/v1/detect", files={"image": ("a.png", b"x", "image/png")})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "file"]
    assert httpx.post(f"{server}/v1/detect", json={"file": "/etc/passwd"}).status_code == 422
    assert httpx.post(f"{server}/v1/detect").status_code == 422


def test_filename_is_never_a_path(
    server: str, images: dict[str, bytes], reference: dict[str, float], tmp_path: Path
) -> None:
    r = post(server, images["a"], name="../../etc/passwd")
    assert r.status_code == 200
    assert r.json()["source"] == "passwd"  # display only
    assert r.json()["fake_prob"] == pytest.approx(reference["a"], abs=1e-5)  # the upload's bytes
    target = tmp_path / "written-by-upload.png"
    assert post(server, images["a"], name=str(target)).status_code == 200
    assert not target.exists()
    # A text upload named like a real image file is judged by its bytes, not by that file.
    r = httpx.post(f"{server}/v1/detect", files={"file": ("/etc/hostname", b"text", "text/plain")})
    assert r.status_code == 415


def test_foreign_host_header_is_refused(server: str) -> None:
    assert httpx.get(f"{server}/healthz", headers={"Host": "evil.example"}).status_code == 400
    assert httpx.get(f"{server}/healthz", headers={"Host": "localhost:1234"}).status_code == 200


# ---------------------------------------------------------------------------- other endpoints
def test_service_endpoints(server: str, detector: Any) -> None:
    health = httpx.get(f"{server}/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    info = httpx.get(f"{server}/v1/model").json()
    assert info["name"] == "mfclip-tiny"
    assert info["threshold"] == pytest.approx(detector.threshold)
    assert info["preprocessing"]["image_size"] == 224
    assert "mfclip_version" in info
    assert info["serving"]["max_upload_bytes"] == LIMIT
    assert info["operating_point"]["summary"] == detector.operating_point.summary()
    assert info["operating_point"]["band"] is None
    docs = httpx.get(f"{server}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = httpx.get(f"{server}/openapi.json").json()
    assert "/v1/detect" in spec["paths"]
    schemas = spec["components"]["schemas"]
    fields = schemas["DetectResult"]["properties"]
    assert {"fake_prob", "raw_prob", "label", "reason", "threshold"} <= fields.keys()
    assert "uncertain" in str(fields["label"])
    assert "summary" in schemas["OperatingPointInfo"]["properties"]
    # No route takes a path: nothing a request names can reach the filesystem.
    assert not any("{" in route for route in spec["paths"])


def test_page_is_self_contained(server: str) -> None:
    r = httpx.get(f"{server}/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert '<input id="file"' in page and '<label class="file-label" for="file">' in page
    assert 'role="alert"' in page and 'aria-live="polite"' in page
    assert "http://" not in page and "https://" not in page  # no CDN, no network
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp


# ---------------------------------------------------------------------------- the command
def test_cli_defaults_and_exposure_refusal(tmp_path: Path) -> None:
    """Defaults; off loopback the command refuses to start without keys, before the model."""
    import argparse

    from mfclip.cli import serve as cli
    from mfclip.serve.auth import InsecureBindError

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["serve", "--model", "m"])
    assert (args.host, args.port, args.max_upload_mb) == ("127.0.0.1", 8000, 10.0)
    assert (args.device, args.batch_size, args.max_wait_ms) == ("auto", 16, 10.0)
    assert (args.api_key_file, args.insecure, args.rate_limit) == (None, False, 0)
    assert (args.request_timeout, args.grace_period, args.cors_origin) == (60.0, 8.0, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--model", "m", "--max-upload-mb", "0"])
    assert cli.is_loopback("127.0.0.1") and cli.is_loopback("::1") and cli.is_loopback("localhost")
    assert not cli.is_loopback("0.0.0.0") and not cli.is_loopback("example.org")

    missing = str(tmp_path / "no-model-here")  # refused before loading: no model needed
    args = parser.parse_args(["serve", "--model", missing, "--host", "0.0.0.0"])
    with pytest.raises(InsecureBindError, match="--api-key-file") as refused:
        args.func(args)
    assert "refusing to serve on 0.0.0.0 without API keys" in str(refused.value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_command_serves_and_stops(tmp_path: Path) -> None:
    """The real command in a subprocess: starts, answers on loopback, stops on Ctrl-C."""
    import mfclip

    mfclip.create_model("mfclip-tiny").save_pretrained(tmp_path / "m")
    port = _free_port()
    cmd = [sys.executable, "-m", "mfclip", "serve", "--model", str(tmp_path / "m"),
           "--port", str(port), "--device", "cpu", "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 45
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"server did not start: {proc.communicate()[0]}")
                time.sleep(0.2)
        assert health.json()["status"] == "ok"
        r = post(f"http://127.0.0.1:{port}", png_bytes())
        assert r.status_code == 200 and 0.0 <= r.json()["fake_prob"] <= 1.0
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, output
    assert f"http://127.0.0.1:{port}/" in output
