"""The service as deployed: API keys, rate limits, timeouts, CORS, metrics and the access log.

Each test starts the real server (uvicorn on a loopback port, ``serve_in_thread``); the model
is the tiny saved model except where a test needs a model of controlled speed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the 'serve' extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the 'serve' extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed (test extra)")
parser = pytest.importorskip("prometheus_client.parser", reason="prometheus-client is missing")

from mfclip.serve.app import create_app  # noqa: E402
from mfclip.serve.auth import KeyFileError, KeyRing, check_exposure, key_id  # noqa: E402
from mfclip.serve.logs import ACCESS_LOGGER  # noqa: E402
from mfclip.serve.ratelimit import RateLimiter  # noqa: E402

from .test_serve import png_bytes, post, serve_in_thread  # noqa: E402
from .test_serve_worker import _FakeDetector  # noqa: E402

KEY_A = "a-key-for-tests-0123456789abcdef"
KEY_B = "b-key-for-tests-fedcba9876543210"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def scrape(
    base: str, key: str | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed by prometheus-client's own parser: (sample, labels) -> value."""
    r = httpx.get(f"{base}/metrics", headers=bearer(key) if key else {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in parser.text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def requests_total(samples: dict, route: str, method: str, status: int) -> float:
    labels = (("method", method), ("route", route), ("status", str(status)))
    return samples.get(("mfclip_http_requests_total", labels), 0.0)


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny model, saved and loaded as ``mfclip serve --model`` loads it."""
    import torch

    import mfclip
    from mfclip import Detector

    torch.manual_seed(0)
    model_dir = tmp_path_factory.mktemp("serve-deploy") / "model"
    mfclip.create_model("mfclip-tiny").save_pretrained(model_dir)
    return Detector.from_pretrained(model_dir, device="cpu")


@pytest.fixture(scope="module")
def keyed(detector: Any) -> Iterator[str]:
    with serve_in_thread(create_app(detector, api_keys=KeyRing([KEY_A, KEY_B]))) as base:
        yield base


# ---------------------------------------------------------------------------- API keys
def test_key_file_format(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# reviewers\n\n  {KEY_A}  \n# ci\n{KEY_B}\n{KEY_A}\n")
    ring = KeyRing.from_file(path)
    assert len(ring) == 2 and ring.ids == [key_id(KEY_A), key_id(KEY_B)]
    assert ring.match(KEY_B) == key_id(KEY_B)
    assert ring.match(KEY_B[:-1]) is None and ring.match("") is None and ring.match(None) is None
    assert len(key_id(KEY_A)) == 12 and KEY_A not in key_id(KEY_A)
    path.write_text("# only comments\n\n")
    with pytest.raises(KeyFileError, match="holds no keys"):
        KeyRing.from_file(path)
    with pytest.raises(KeyFileError, match="at least 16 ASCII characters"):
        KeyRing(["short"])
    with pytest.raises(KeyFileError, match="ASCII"):  # headers arrive as latin-1: never matches
        KeyRing(["schlüssel-" * 3])
    with pytest.raises(KeyFileError, match="cannot read"):
        KeyRing.from_file(tmp_path / "missing")
    check_exposure("0.0.0.0", ring, insecure=False)  # keys: fine anywhere
    check_exposure("0.0.0.0", None, insecure=True)  # told so
    check_exposure("127.0.0.1", None, insecure=False)  # loopback without keys, as before


def test_api_needs_a_valid_key(keyed: str) -> None:
    image = png_bytes(seed=5)
    for headers in ({}, bearer("wrong-key-wrong-key-wrong"), {"X-API-Key": KEY_A[:-1]}):
        r = post(keyed, image, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert KEY_A not in r.text
    assert (
        'error="invalid_token"'
        in post(keyed, image, headers=bearer("x" * 20)).headers["www-authenticate"]
    )
    assert "missing API key" in post(keyed, image).json()["detail"]
    assert httpx.get(f"{keyed}/v1/model").status_code == 401
    assert httpx.get(f"{keyed}/metrics").status_code == 401
    assert httpx.get(f"{keyed}/metrics", headers=bearer(KEY_A)).status_code == 200
    for headers in (bearer(KEY_A), {"X-API-Key": KEY_B}, {"authorization": f"bearer {KEY_B}"}):
        r = post(keyed, image, headers=headers)
        assert r.status_code == 200, (headers, r.text)
        assert 0.0 <= r.json()["fake_prob"] <= 1.0
    info = httpx.get(f"{keyed}/v1/model", headers=bearer(KEY_A)).json()
    assert info["serving"]["api_key_required"] is True


def test_page_and_probes_stay_open(keyed: str) -> None:
    """The page (where a person enters the key), health, readiness and the API description."""
    for path in ("/", "/healthz", "/readyz", "/openapi.json", "/docs"):
        assert httpx.get(f"{keyed}{path}").status_code == 200, path
    assert 'id="api-key"' in httpx.get(f"{keyed}/").text
    spec = httpx.get(f"{keyed}/openapi.json").json()
    assert {"HTTPBearer", "APIKeyHeader"} <= spec["components"]["securitySchemes"].keys()
    assert httpx.get(f"{keyed}/readyz").json()["status"] == "ready"


# ---------------------------------------------------------------------------- rate limit
def test_token_bucket_with_a_clock() -> None:
    now = [0.0]
    limiter = RateLimiter(3, window_s=60.0, clock=lambda: now[0])
    assert [limiter.check("a") for _ in range(3)] == [None, None, None]  # a burst of 3
    assert limiter.check("a") == 20  # one token every 20 s
    assert limiter.check("b") is None  # clients have their own buckets
    now[0] = 19.5
    assert limiter.check("a") == 1  # half a second to go: rounded up, never 0
    now[0] = 20.0
    assert limiter.check("a") is None and limiter.check("a") == 20
    now[0] = 1000.0
    assert [limiter.check("a") for _ in range(4)] == [None, None, None, 20]  # capped at 3


def test_token_bucket_memory_is_bounded() -> None:
    now = [0.0]
    limiter = RateLimiter(1, window_s=1.0, clock=lambda: now[0], max_clients=10)
    for i in range(10):
        limiter.check(f"c{i}")
    now[0] = 5.0  # all refilled: forgotten when a new client arrives
    assert limiter.check("new") is None
    assert len(limiter._buckets) == 1


def test_rate_limit_429_and_recovery(tmp_path: Path) -> None:
    app = create_app(
        _FakeDetector(delay=0.0), api_keys=KeyRing([KEY_A, KEY_B]), rate_limit=2, rate_window_s=1
    )
    with serve_in_thread(app) as base:
        image = png_bytes(40, 20)
        assert [post(base, image, headers=bearer(KEY_A)).status_code for _ in range(2)] == [
            200,
            200,
        ]
        limited = post(base, image, headers=bearer(KEY_A))
        assert limited.status_code == 429
        retry = int(limited.headers["retry-after"])
        assert retry == 1 and "rate limit" in limited.json()["detail"]
        assert post(base, image, headers=bearer(KEY_B)).status_code == 200  # another client
        assert httpx.get(f"{base}/healthz").status_code == 200  # probes are never limited
        time.sleep(retry)
        assert post(base, image, headers=bearer(KEY_A)).status_code == 200  # recovered
        info = httpx.get(f"{base}/v1/model", headers=bearer(KEY_B)).json()["serving"]
        assert (info["rate_limit"], info["rate_window_s"]) == (2, 1)
        samples = scrape(base, KEY_B)
    assert samples[("mfclip_rate_limited_total", ())] == 1
    assert requests_total(samples, "/v1/detect", "POST", 429) == 1


# ---------------------------------------------------------------------------- timeout
class _SlowWide(_FakeDetector):
    """Takes 1.5 s for images 200 px wide or more, no time for narrower ones."""

    def __call__(self, images: list[Image.Image]) -> Any:
        self.delay = 1.5 if any(im.width >= 200 for im in images) else 0.0
        return super().__call__(images)


def test_request_timeout_is_504_and_the_server_recovers() -> None:
    app = create_app(_SlowWide(0.0), batch_size=1, max_wait_ms=0, request_timeout_s=0.3)
    with serve_in_thread(app) as base:
        tick = time.monotonic()
        r = post(base, png_bytes(200, 20))
        assert r.status_code == 504 and "0.3 s" in r.json()["detail"]
        assert time.monotonic() - tick < 1.4  # answered at the timeout, not when the model was
        assert httpx.get(f"{base}/readyz").status_code == 200
        deadline = time.monotonic() + 10
        while httpx.get(f"{base}/healthz").json()["running"]:  # the abandoned call ends
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ok = post(base, png_bytes(50, 20))
        assert ok.status_code == 200 and ok.json()["fake_prob"] == pytest.approx(0.05)
        assert httpx.get(f"{base}/v1/model").json()["serving"]["request_timeout_s"] == 0.3
        samples = scrape(base)
    assert samples[("mfclip_request_timeouts_total", ())] == 1


# ---------------------------------------------------------------------------- CORS
def test_cors_is_closed_unless_opened() -> None:
    preflight = {
        "Origin": "https://review.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    with serve_in_thread(create_app(_FakeDetector(0.0))) as base:
        r = httpx.get(f"{base}/v1/model", headers={"Origin": "https://review.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        r = httpx.options(f"{base}/v1/detect", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    app = create_app(
        _FakeDetector(0.0), api_keys=KeyRing([KEY_A]), cors_origins=["https://review.example"]
    )
    with serve_in_thread(app) as base:
        r = httpx.options(f"{base}/v1/detect", headers=preflight)
        assert r.status_code == 200  # a preflight needs no key
        assert r.headers["access-control-allow-origin"] == "https://review.example"
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        r = httpx.get(
            f"{base}/v1/model", headers={"Origin": "https://review.example", **bearer(KEY_A)}
        )
        assert r.headers["access-control-allow-origin"] == "https://review.example"
        other = httpx.get(f"{base}/v1/model", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


# ---------------------------------------------------------------------------- metrics
def test_metrics_count_what_was_sent(detector: Any) -> None:
    app = create_app(detector, api_keys=KeyRing([KEY_A]), batch_size=4, max_wait_ms=0)
    with serve_in_thread(app) as base:
        before = scrape(base, KEY_A)
        assert requests_total(before, "/v1/detect", "POST", 200) == 0
        for seed in range(3):
            assert post(base, png_bytes(seed=seed), headers=bearer(KEY_A)).status_code == 200
        files = {"file": ("x.png", b"not an image", "image/png")}
        text = httpx.post(f"{base}/v1/detect", files=files, headers=bearer(KEY_A))
        assert text.status_code == 415
        assert post(base, png_bytes()).status_code == 401
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/no/such/path").status_code == 401  # default deny
        health = httpx.get(f"{base}/healthz").json()
        after = scrape(base, KEY_A)
        with serve_in_thread(create_app(detector)) as other:
            fresh = scrape(other)  # a second app in the same process: its own registry
    assert requests_total(after, "/v1/detect", "POST", 200) == 3
    assert requests_total(after, "/v1/detect", "POST", 415) == 1
    assert requests_total(after, "/v1/detect", "POST", 401) == 1
    assert requests_total(after, "/healthz", "GET", 200) == 2
    assert requests_total(after, "other", "GET", 401) == 1  # unknown paths share one label
    assert requests_total(after, "/metrics", "GET", 200) == 1  # the first scrape
    latency = ("mfclip_http_request_duration_seconds_count", (("route", "/v1/detect"),))
    assert after[latency] == 5
    assert after[("mfclip_batch_size_count", ())] == health["batches"]
    assert after[("mfclip_batch_size_sum", ())] == health["requests"] == 3
    assert after[("mfclip_model_seconds_count", ())] == health["batches"]
    assert after[("mfclip_model_seconds_sum", ())] == pytest.approx(
        health["model_seconds"], abs=2e-3
    )
    assert after[("mfclip_queue_depth", ())] == 0
    assert after[("mfclip_rate_limited_total", ())] == 0
    verdicts = sum(v for (name, _), v in after.items() if name == "mfclip_verdicts_total")
    assert verdicts == 3
    info = after[("mfclip_info", (("model", "mfclip-tiny"), ("version", mfclip_version())))]
    assert info == 1
    assert requests_total(fresh, "/v1/detect", "POST", 200) == 0


def mfclip_version() -> str:
    from mfclip.version import __version__

    return __version__


# ---------------------------------------------------------------------------- access log
def test_access_log_is_json_without_secrets(keyed: str, caplog: pytest.LogCaptureFixture) -> None:
    image = png_bytes(64, 48, seed=9)
    secret_query = "explain=false&token=do-not-log-me"
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        ok = post(
            keyed, image, params=secret_query, headers={**bearer(KEY_A), "X-Request-ID": "r-1"}
        )
        denied = post(keyed, image, headers=bearer(KEY_B[::-1]))
        deadline = time.monotonic() + 5
        while len([r for r in caplog.records if r.name == ACCESS_LOGGER]) < 2:
            assert time.monotonic() < deadline, "the access log lines never came"
            time.sleep(0.02)
    assert (ok.status_code, denied.status_code) == (200, 401)
    assert ok.headers["x-request-id"] == "r-1"
    lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
    rows = [json.loads(line) for line in lines]
    fields = {"time", "method", "path", "status", "duration_ms", "client", "key_id", "request_id"}
    assert all(row.keys() == fields for row in rows)
    assert rows[0]["path"] == "/v1/detect" and rows[0]["method"] == "POST"
    assert (rows[0]["status"], rows[0]["key_id"], rows[0]["request_id"]) == (
        200,
        key_id(KEY_A),
        "r-1",
    )
    assert rows[0]["client"] == "127.0.0.1" and rows[0]["duration_ms"] > 0
    assert (rows[1]["status"], rows[1]["key_id"]) == (401, None)
    assert rows[1]["request_id"] == denied.headers["x-request-id"]  # generated when not sent
    text = "\n".join(lines)
    for secret in (KEY_A, KEY_B, KEY_B[::-1], "do-not-log-me", "token=", "explain="):
        assert secret not in text
    assert image[16:48].decode("latin-1") not in text and "PNG" not in text
    assert len(text) < 1000
