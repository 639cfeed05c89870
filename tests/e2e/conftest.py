"""Browser tests: the real app over HTTP, a real rq worker, and headless Debian chromium.

The session `app` serves on 127.0.0.1 (a free port) from a werkzeug thread; `python worker.py`
runs the generation and mail jobs in a subprocess on the same database, Redis and storage
directory, sending mail to the suite's SMTP server (tests/conftest.py `smtp_server`).
The tests commit for real (they are marked `concurrency`), so every user signs up as
`e2e-…@concurrency.example.com` and is deleted after the test by tests/conftest.py.

Screenshots go to docs/screenshots/ when E2E_SCREENSHOTS=1 is set, otherwise to a temporary
directory, so an ordinary run leaves the working tree alone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from PIL import Image, ImageDraw
from rq import Worker
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from werkzeug.serving import WSGIRequestHandler, make_server

from credit_app.platform.config import PROJECT_ROOT, instance_path
from credit_app.platform.extensions import db
from credit_app.platform.redis_client import get_redis
from credit_app.testing.mail_stand_in import Mailbox
from tests.e2e.pages import Roomcraft

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT_DIR = PROJECT_ROOT / "docs" / "screenshots"
DESKTOP = (1280, 900)
WORKER_START_TIMEOUT = 30.0


def _require_browser() -> None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.skip(
            f"browser tests need Debian chromium and chromium-driver: {', '.join(missing)} missing"
        )


@pytest.fixture(scope="package")
def storage_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Uploads and results, shared by the web thread and the worker process."""
    return tmp_path_factory.mktemp("e2e-generations")


@pytest.fixture(scope="package")
def creem_port() -> int:
    """The port the tests' Creem stand-in listens on, so the worker process (which re-reads
    subscriptions from Creem's API) reaches the same stand-in as the web thread."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="package")
def rq_worker(
    app: Flask, storage_dir: Path, creem_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen]:
    """`python worker.py` on the test database and Redis, until the package's tests end."""
    _require_browser()
    with app.app_context():
        database_url = db.engine.url.render_as_string(hide_password=False)
        connection = get_redis()
    env = {
        **os.environ,
        "APP_ENV": "testing",
        "TEST_DATABASE_URL": database_url,
        "REDIS_URL": app.config["REDIS_URL"],
        "INSTANCE_PATH": str(instance_path()),
        "GENERATION_STORAGE_PATH": str(storage_dir),
        "PYTHONUNBUFFERED": "1",
        "CREEM_API_URL": f"http://127.0.0.1:{creem_port}",
        "MAIL_URL": app.config["MAIL_URL"],
    }
    log_path = tmp_path_factory.mktemp("e2e-worker") / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "worker.py"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while not any(worker.pid == process.pid for worker in Worker.all(connection=connection)):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the rq worker did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield process
    finally:
        _stop_process_group(process)


def _stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM (rq's warm shutdown) to the worker and its children, SIGKILL if it hangs."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


class QuietHandler(WSGIRequestHandler):
    """The dev server's handler without its line per request (errors are still logged)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


@pytest.fixture(scope="package")
def live_server(app: Flask, rq_worker: subprocess.Popen, storage_dir: Path) -> Iterator[str]:
    """The app over HTTP with production-like settings; yields its base URL.

    CSRF is on, and SERVER_NAME is unset so that URLs (the live counter's ws:// one too) use
    the host the browser asked for.
    """
    _require_browser()
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(app.config, "SERVER_NAME", None)
        patch.setitem(app.config, "WTF_CSRF_ENABLED", True)
        patch.setitem(app.config, "RATELIMIT_AUTH", "1000 per minute")
        patch.setitem(app.config, "GENERATION_STORAGE_PATH", storage_dir)
        patch.setitem(app.config, "GENERATION_PROVIDER", "local")
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
        thread = threading.Thread(target=server.serve_forever, name="e2e-live-server", daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            thread.join(timeout=10)
            server.server_close()


def make_driver(profile_dir: Path, size: tuple[int, int] = DESKTOP) -> WebDriver:
    """Headless Debian chromium through Debian's chromedriver (nothing is downloaded)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile_dir}",
        f"--window-size={size[0]},{size[1]}",
        "--lang=en-US",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


@pytest.fixture
def browser(live_server: str, tmp_path: Path) -> Iterator[WebDriver]:
    driver = make_driver(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="package")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("E2E_SCREENSHOTS") == "1":
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        return SCREENSHOT_DIR
    return tmp_path_factory.mktemp("e2e-screenshots")


@pytest.fixture
def roomcraft(
    browser: WebDriver, live_server: str, screenshot_dir: Path, smtp_server: tuple[Mailbox, int]
) -> Roomcraft:
    """The app as a user sees it in the browser, with the mail the test SMTP server got."""
    return Roomcraft(browser, live_server, screenshot_dir, smtp_server[0])


@pytest.fixture(scope="package")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real image files to upload, one per kind of input, drawn with Pillow."""
    folder = tmp_path_factory.mktemp("e2e-images")
    drawers: dict[str, tuple[Callable[[ImageDraw.ImageDraw], None], str, str]] = {
        "room": (_draw_room, "room.png", "PNG"),
        "empty_room": (_draw_empty_room, "empty-room.jpg", "JPEG"),
        "house": (_draw_house, "house.jpg", "JPEG"),
        "sketch": (_draw_sketch, "sketch.png", "PNG"),
    }
    paths = {}
    for key, (draw, name, image_format) in drawers.items():
        image = Image.new("RGB", (800, 600), (255, 255, 255))
        draw(ImageDraw.Draw(image))
        paths[key] = folder / name
        image.save(paths[key], image_format)
    return paths


def _draw_empty_room(draw: ImageDraw.ImageDraw) -> None:
    draw.rectangle((0, 0, 800, 600), fill=(214, 205, 190))
    draw.polygon([(0, 600), (160, 420), (640, 420), (800, 600)], fill=(150, 112, 78))
    draw.rectangle((300, 120, 500, 330), fill=(190, 220, 240), outline=(250, 250, 250), width=8)


def _draw_room(draw: ImageDraw.ImageDraw) -> None:
    _draw_empty_room(draw)
    draw.rectangle((90, 390, 360, 500), fill=(70, 90, 120))
    draw.rectangle((90, 340, 360, 400), fill=(80, 100, 135))
    draw.ellipse((520, 360, 620, 460), fill=(200, 60, 50))
    draw.rectangle((565, 460, 575, 540), fill=(40, 40, 40))


def _draw_house(draw: ImageDraw.ImageDraw) -> None:
    draw.rectangle((0, 0, 800, 600), fill=(150, 200, 240))
    draw.rectangle((0, 480, 800, 600), fill=(90, 150, 70))
    draw.rectangle((200, 260, 600, 500), fill=(230, 220, 200))
    draw.polygon([(170, 270), (400, 110), (630, 270)], fill=(130, 60, 50))
    draw.rectangle((370, 380, 430, 500), fill=(90, 60, 40))
    for left in (240, 480):
        draw.rectangle((left, 320, left + 80, 380), fill=(180, 210, 230))


def _draw_sketch(draw: ImageDraw.ImageDraw) -> None:
    ink = (30, 30, 30)
    draw.line([(0, 470), (800, 470)], fill=ink, width=4)
    draw.rectangle((320, 110, 480, 300), outline=ink, width=4)
    draw.line([(400, 110), (400, 300)], fill=ink, width=3)
    draw.rectangle((80, 360, 330, 470), outline=ink, width=4)
    draw.rectangle((560, 330, 700, 470), outline=ink, width=4)
