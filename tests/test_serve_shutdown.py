"""The real command: refusing an exposed address, graceful SIGTERM, and the container recipe."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the 'serve' extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the 'serve' extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed (test extra)")

from mfclip.serve.batcher import MicroBatcher, ShuttingDownError  # noqa: E402

from .test_serve import _free_port, png_bytes, post  # noqa: E402
from .test_serve_worker import _FakeDetector  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY = "shutdown-test-key-0123456789abcdef"


def test_drain_finishes_in_time_then_refuses() -> None:
    """Jobs the model reaches within the drain window finish; the rest get ShuttingDownError."""

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(_FakeDetector(delay=0.4), batch_size=1, max_wait_ms=0)
        await batcher.start()
        jobs = [
            asyncio.ensure_future(batcher.submit(Image.new("RGB", (100 * (i + 1), 10))))
            for i in range(3)
        ]
        await asyncio.sleep(0.05)
        batcher.drain(0.6)  # the first call ends at 0.4 s; the second is cut off at 0.6 s
        assert batcher.draining
        results = await asyncio.gather(*jobs, return_exceptions=True)
        with pytest.raises(ShuttingDownError):
            await batcher.submit(Image.new("RGB", (10, 10)))
        await batcher.stop()
        return results

    first, second, third = asyncio.run(scenario())
    assert first.row["fake_prob"] == pytest.approx(0.1)
    assert isinstance(second, ShuttingDownError) and isinstance(third, ShuttingDownError)


def test_command_refuses_an_exposed_address_without_keys(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "mfclip", "serve", "--model", str(tmp_path / "none"),
           "--host", "0.0.0.0", "--port", str(_free_port())]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "refusing to serve on 0.0.0.0 without API keys" in done.stderr
    assert "--api-key-file" in done.stderr and "--insecure" in done.stderr


def _wait_until_ready(proc: subprocess.Popen, base: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not start: {proc.communicate()}")
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize(("grace", "explain"), [(6.0, False), (1.5, True)], ids=["drain", "cut"])
def test_sigterm_answers_every_accepted_request(
    tmp_path: Path, grace: float, explain: bool
) -> None:
    """A burst on one model thread, SIGTERM while it is queued: 200 or 503 for every request,
    no new connections, and the process gone within the grace period. ``drain``: the queue
    can finish in time; ``cut``: explanations (slow) cannot, so the rest get 503."""
    import mfclip

    mfclip.create_model("mfclip-tiny").save_pretrained(tmp_path / "m")
    (tmp_path / "keys").write_text(f"# test\n{KEY}\n")
    port, burst = _free_port(), 12
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mfclip", "serve", "--model", str(tmp_path / "m"),
           "--port", str(port), "--device", "cpu", "--batch-size", "1", "--max-wait-ms", "0",
           "--grace-period", str(grace), "--api-key-file", str(tmp_path / "keys")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results: list[tuple[Any, float]] = []
    lock = threading.Lock()

    def one(seed: int) -> None:
        try:
            params = {"explain": "true"} if explain else {}
            r = post(base, png_bytes(seed=seed), headers={"X-API-Key": KEY}, params=params)
            outcome: Any = (r.status_code, r.json()["detail" if r.status_code != 200 else "label"])
        except httpx.HTTPError as exc:
            outcome = exc
        with lock:
            results.append((outcome, time.monotonic()))

    try:
        _wait_until_ready(proc, base)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(burst)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while True:  # every request accepted: answered, queued or on the model thread
            h = httpx.get(f"{base}/healthz", timeout=5).json()
            if h["requests"] + h["queued"] + h["running"] >= burst:
                break
            assert time.monotonic() < deadline, h
            time.sleep(0.02)
        assert h["requests"] < burst  # work is still in flight
        proc.send_signal(signal.SIGTERM)
        sigterm = time.monotonic()
        refused = False
        while not refused and time.monotonic() < sigterm + 3:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                time.sleep(0.05)
            except httpx.TransportError:
                # Refused, or reset from the listen backlog: either way no new request is
                # served while the accepted ones drain.
                refused = True
        for t in threads:
            t.join(timeout=grace + 30)
        out, err = proc.communicate(timeout=grace + 30)
        exited = time.monotonic() - sigterm
    finally:
        if proc.poll() is None:
            proc.kill()
    codes = [o[0] if isinstance(o, tuple) else type(o).__name__ for o, _ in results]
    print(f"SIGTERM drain: exit after {exited:.2f} s (grace {grace} s), statuses {codes}")
    assert refused
    assert exited < grace + 3, f"took {exited:.1f} s to exit with a {grace} s grace period"
    assert proc.returncode in (0, -signal.SIGTERM), err
    statuses = [outcome for outcome, _ in results]
    assert len(statuses) == burst
    assert all(isinstance(s, tuple) and s[0] in (200, 503) for s in statuses), statuses
    if explain:
        assert any(s[0] == 503 for s in statuses)  # cut off at the end of the grace period
    else:
        assert any(s[0] == 200 and at > sigterm for (s, at) in results), "nothing drained"
    assert all("shutting down" in s[1] for s in statuses if s[0] == 503)
    access = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    detects = [row for row in access if row["path"] == "/v1/detect"]
    assert sorted(row["status"] for row in detects) == sorted(s[0] for s in statuses)
    assert KEY not in out and KEY not in err


# ---------------------------------------------------------------------------- the container
def _dockerfile() -> dict[str, list[str]]:
    """Instruction -> its arguments, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.setdefault(word.upper(), []).append(rest.strip())
    return found


def test_dockerfile_matches_the_command() -> None:
    import argparse

    from mfclip.cli import serve as cli

    docker = _dockerfile()
    user = docker["USER"][-1]
    assert user not in ("root", "0") and "useradd" in " ".join(docker["RUN"])
    argv = json.loads(docker["ENTRYPOINT"][-1]) + json.loads(docker["CMD"][-1])
    assert argv[:2] == ["mfclip", "serve"]
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(argv[1:])  # every flag exists in `mfclip serve --help`
    assert (args.model, args.host) == ("/model", "0.0.0.0")
    assert args.api_key_file == "/run/secrets/mfclip-keys"
    assert docker["EXPOSE"] == [str(args.port)]
    health = docker["HEALTHCHECK"][-1]
    assert (
        f"127.0.0.1:{args.port}/healthz" in health and "urllib" in health and "curl" not in health
    )
    assert any("TORCH_INDEX" in arg for arg in docker["ARG"])
    # torch comes first from TORCH_INDEX, within the package's own range (else the package
    # install would replace it with a build from PyPI).
    pinned = next(
        line for line in (ROOT / "pyproject.toml").read_text().splitlines() if '"torch' in line
    )
    assert f"TORCH_SPEC={pinned.strip().rstrip(',')}" in docker["ARG"]
    assert any('"/tmp/mfclip-src[serve]"' in run for run in docker["RUN"])
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignored[:1] == ["*"] and "!src/" in ignored  # the venv and tests stay out

    docs = (ROOT / "docs" / "serving.md").read_text()
    runs = [line for line in docs.replace("\\\n", " ").splitlines() if "docker run" in line]
    assert any(":/model:ro" in r and ":/run/secrets/mfclip-keys:ro" in r for r in runs), runs
    assert "--build-arg TORCH_INDEX=" in docs
    for line in runs:  # flags passed after the image are `mfclip serve` flags
        words = shlex.split(line.strip().lstrip("$ "))
        tail = words[words.index("mfclip-serve") + 1 :] if "mfclip-serve" in words else []
        if tail:
            parser.parse_args(["serve", *tail])
