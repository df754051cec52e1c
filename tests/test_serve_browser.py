"""The web page in a real browser: Debian's Chromium driven by Playwright, on the real server.

Playwright's own browser downloads are not used (no network here): the test launches
``/usr/bin/chromium`` (``apt-get install chromium``; ``.ci/run`` installs it when it can) and
skips, saying why, when that or the ``playwright`` package is missing.
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the 'serve' extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the 'serve' extra (uvicorn) is not installed")
pytest.importorskip("httpx", reason="httpx is not installed (test extra)")
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the playwright package is not installed (pip install playwright; the browser "
    "itself comes from Debian: apt-get install chromium)",
)

from mfclip.serve.app import create_app  # noqa: E402

from .test_serve import banded_detector, png_bytes, serve_in_thread  # noqa: E402

CHROMIUM = Path(os.environ.get("MFCLIP_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium, or set MFCLIP_CHROMIUM); "
    "the page's HTTP side is still covered by tests/test_serve.py",
)


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import torch

    import mfclip
    from mfclip import Detector

    torch.manual_seed(0)
    model_dir = tmp_path_factory.mktemp("serve-browser") / "model"
    mfclip.create_model("mfclip-tiny").save_pretrained(model_dir)
    return Detector.from_pretrained(model_dir, device="cpu")


@pytest.fixture(scope="module")
def server(detector: Any) -> Iterator[str]:
    with serve_in_thread(create_app(detector, max_upload_bytes=512 * 1024)) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture()
def console() -> list[str]:
    """The page's console errors (CSP violations would show up here)."""
    return []


@contextmanager
def open_page(browser: Any, base: str, console: list[str]) -> Iterator[Any]:
    """The page at ``base``, once it has shown the model information."""
    context = browser.new_context()
    page = context.new_page()
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.goto(f"{base}/")
    page.locator("#model-info", has_text="tiny").wait_for()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture()
def page(browser: Any, server: str, console: list[str]) -> Iterator[Any]:
    with open_page(browser, server, console) as page:
        yield page


def _expect_result(page: Any, detector: Any, data: bytes) -> None:
    """Verdict, probability and a loaded explanation image, all matching the detector."""
    page.wait_for_selector("#explanation-figure:not([hidden])", timeout=30_000)
    ref = detector(Image.open(io.BytesIO(data)))
    assert page.inner_text("#verdict") == ref.label.upper()
    prob = page.inner_text("#prob")
    assert re.fullmatch(r"p\(fake\) \d{1,3}\.\d % \(uncalibrated\)", prob)
    assert f"{100 * ref.fake_prob:.1f} %" in prob
    assert page.inner_text("#reason") == ref.reason  # the rule behind the verdict
    assert "No sign of forgery" not in page.inner_text("#result")
    loaded = page.eval_on_selector(
        "#explanation", "img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0"
    )
    assert loaded
    assert page.evaluate("document.activeElement.id") == "verdict-heading"  # focus moved
    assert page.is_hidden("#error")


def test_pick_an_image(page: Any, detector: Any, tmp_path: Path, console: list[str]) -> None:
    data = png_bytes(120, 100, seed=3)
    path = tmp_path / "portrait.png"
    path.write_bytes(data)
    page.keyboard.press("Tab")  # the file input is the first stop for keyboard users
    assert page.evaluate("document.activeElement.id") == "file"
    page.set_input_files("#file", str(path))
    _expect_result(page, detector, data)
    assert page.inner_text("#source") == "portrait.png"
    assert "Done:" in page.inner_text("#status")
    assert console == []


def test_drop_an_image(page: Any, detector: Any) -> None:
    data = png_bytes(90, 90, seed=4)
    page.evaluate(
        """b64 => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
            const zone = document.getElementById("drop");
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true,
                                                      cancelable: true}));
        }""",
        base64.b64encode(data).decode(),
    )
    _expect_result(page, detector, data)
    assert page.inner_text("#source") == "dropped.png"


def test_server_error_is_shown(page: Any, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not an image\n")
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    text = page.inner_text("#error")
    assert "415" in text and "not an image" in text
    assert page.is_hidden("#result")
    assert page.get_attribute("#error", "role") == "alert"


def test_uncertain_and_flagged_verdicts(browser: Any, tmp_path: Path, console: list[str]) -> None:
    """Each verdict has its word, its colour class and the reason; FAKE below 50 % says why."""
    detector, images = banded_detector()
    shown: dict[str, str] = {}
    with serve_in_thread(create_app(detector)) as base, open_page(browser, base, console) as page:
        assert "uncertain between" in page.inner_text("#model-info")  # the summary sentence
        page.uncheck("#explain")  # no panel needed here: faster
        for want in ("uncertain", "fake", "real"):
            path = tmp_path / f"{want}.png"
            path.write_bytes(images[want])
            page.set_input_files("#file", str(path))
            page.wait_for_function(
                "name => document.getElementById('source').textContent === name "
                "&& document.getElementById('status').textContent.startsWith('Done:')",
                arg=path.name,
            )
            ref = detector(Image.open(io.BytesIO(images[want])))
            assert ref.label == want
            assert page.inner_text("#verdict") == want.upper()
            assert page.get_attribute("#verdict", "class") == f"badge {want}"
            assert page.inner_text("#reason") == ref.reason
            assert f"p(fake) {100 * ref.fake_prob:.1f} % (calibrated)" == page.inner_text("#prob")
            assert want.upper() in page.inner_text("#status")
            shown[want] = page.inner_text("#result")
    assert "have a person look" in shown["uncertain"].lower()
    assert "below 50 %" in shown["fake"]  # FAKE although the number is under one half: why
    assert console == []


def test_api_key_entry(browser: Any, detector: Any, tmp_path: Path, console: list[str]) -> None:
    """With keys on, the page asks for one, keeps it in sessionStorage and sends it."""
    from mfclip.serve.auth import KeyRing

    key = "browser-test-key-0123456789abcdef"
    app = create_app(detector, api_keys=KeyRing([key]))
    with serve_in_thread(app) as base:
        context = browser.new_context()
        page = context.new_page()
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.goto(f"{base}/")
        page.wait_for_selector("#key-box:not([hidden])")
        assert "401" in page.inner_text("#model-info")
        assert page.evaluate("document.activeElement.id") == "api-key"
        page.fill("#api-key", "wrong-key-wrong-key-wrong")
        page.click("#key-use")
        page.locator("#model-info", has_text="401").wait_for()
        page.fill("#api-key", key)
        page.keyboard.press("Enter")
        page.locator("#model-info", has_text="tiny").wait_for()
        assert page.evaluate("sessionStorage.getItem('mfclip-api-key')") == key
        assert page.input_value("#api-key") == ""  # not left on screen
        data = png_bytes(80, 80, seed=6)
        path = tmp_path / "keyed.png"
        path.write_bytes(data)
        page.set_input_files("#file", str(path))
        _expect_result(page, detector, data)
        page.reload()  # the same tab keeps the key
        page.locator("#model-info", has_text="tiny").wait_for()
        context.close()
    assert [m for m in console if "401" not in m] == []  # the 401s themselves are logged
