"""Fixtures for the web pages: a browser-less client with its own cookie jar, logging in through the login form;
and, for the browser tests, the API app served by uvicorn on a free port and Debian's Chromium driven by
Playwright (skipped, with the reason, only when no Chromium exists and CI is unset). Screenshots of the pages
the tests visit: `FLASKTRACK_UPDATE_SCREENSHOTS=1 .venv/bin/python -m pytest tests/ui` renews docs/ui/."""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import Platform
from tests.runs.conftest import client, dev_env, temporal_api, worker_process  # noqa: F401 - the real worker and Temporal

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "ui"
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has a form with a CSRF token"
    return match.group(1)


def pages_client(client: TestClient) -> TestClient:  # noqa: F811 - any client of the app
    """A client of the same app with a cookie jar of its own (the shared client stays cookie-free)."""
    return TestClient(client.app, base_url="http://testserver", follow_redirects=False)


def log_in(web: TestClient, email: str, password: str, org: str | None = None) -> Any:
    token = csrf_of(web.get("/ui/login").text)
    data = {"email": email, "password": password, "csrf_token": token, "next": "/ui/inbox"}
    if org:
        data["org"] = org
    return web.post("/ui/login", data=data)


def chromium_path() -> str | None:
    for candidate in (os.environ.get("FLASKTRACK_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        message = "browser tests need Chromium: apt-get install -y chromium (or set FLASKTRACK_CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(message + " — CI must run them (.ci/run installs it)")
        pytest.skip(message)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def web_url(temporal_api: Platform) -> Iterator[str]:  # noqa: F811 - the fixture imported above
    """The API app (pages included) served over HTTP, in a thread, against the tests' platform and worker."""
    import uvicorn

    port = _free_port()
    app = create_app(replace(temporal_api), background=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the web server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser(chromium: str, web_url: str) -> Iterator[Any]:
    """Per module, and after the server: Playwright's sync API runs an event loop of its own in this thread, so
    the session's async fixtures (Temporal) must be up before it starts, and no async test may run meanwhile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A tablet-sized page (the bench), its own cookies."""
    context = browser.new_context(viewport={"width": 1024, "height": 768}, locale="en-GB")
    p = context.new_page()
    p.set_default_timeout(20_000)
    yield p
    context.close()


def screenshot(page: Any, name: str) -> None:
    """Every run renders the page to an image; FLASKTRACK_UPDATE_SCREENSHOTS=1 keeps them as docs/ui/<name>.png
    (committed), so an ordinary `make test` leaves the working tree as it was."""
    if os.environ.get("FLASKTRACK_UPDATE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    else:
        assert page.screenshot(full_page=True)
