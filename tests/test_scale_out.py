"""A Heroku-like layout: two web dynos and a worker dyno that share no disk.

Each process is started as the Procfile starts it (`gunicorn app:app --config gunicorn.conf.py`,
`python worker.py`) with APP_ENV=production, a DYNO name and its own INSTANCE_PATH and TMPDIR,
on the real PostgreSQL and Redis of the test run and a bucket on the S3 stand-in, over TLS. Requests
come in as Heroku's router sends them (plain HTTP with X-Forwarded-For/-Proto). A generation
uploaded through web A is run by the worker and fetched through web B while web B's socket
shows the balance change; then a few hundred consumes go through both webs, and the ledger
audit must hold. Select these with `-m scale_out`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import simple_websocket
from sqlalchemy import select

from credit_app.generation.features import FEATURES
from credit_app.generation.images import variant_key
from credit_app.models import Generation, User
from credit_app.platform.extensions import db
from credit_app.services import accounts
from credit_app.services.ledger_audit import audit_ledger
from tests.blueprints.test_generations import FORMS, photo
from tests.conftest import CONCURRENCY_DOMAIN, PASSWORD
from tests.s3_support import create_bucket, free_port, object_keys, s3_environment
from tests.test_live import SocketClient

pytestmark = [pytest.mark.scale_out, pytest.mark.concurrency]

PROJECT = Path(__file__).resolve().parent.parent
BROWSER = "Mozilla/5.0 (scale-out test)"
START_TIMEOUT_SECONDS = 60
GENERATION_TIMEOUT_SECONDS = 90
LOAD_USERS = 30
CONSUMES_PER_USER = 10
# Fewer concurrent requests than one process's pool (5 + 5), so none waits out the 1 s pool
# timeout on a busy machine: the test checks the ledger, not overload shedding.
LOAD_THREADS = 8


@dataclass
class Dyno:
    name: str
    process: subprocess.Popen
    instance: Path
    log: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def router_headers(client_address: str = "203.0.113.7", proto: str = "https") -> dict:
    """What Heroku's router adds to every request it forwards."""
    return {"X-Forwarded-For": client_address, "X-Forwarded-Proto": proto, "User-Agent": BROWSER}


@pytest.fixture(scope="module")
def s3(s3_tls_stand_in: tuple[str, Path]) -> tuple[str, str, Path]:
    """A bucket on the TLS S3 stand-in: (endpoint, bucket, certificate to trust)."""
    endpoint, certificate = s3_tls_stand_in
    return endpoint, create_bucket(endpoint, certificate), certificate


@pytest.fixture(scope="module")
def dyno_environment(app, s3: tuple[str, str, Path]) -> dict[str, str]:
    """The config vars app.json declares, pointing at this run's servers."""
    with app.app_context():
        database_url = db.engine.url.render_as_string(hide_password=False)
    removed = {
        "TEST_DATABASE_URL",
        "GENERATION_STORAGE_PATH",
        "STORAGE_BACKEND",
        "ALLOW_EMBEDDED_SERVICES",
        "PORT",
    }
    return {
        **{name: value for name, value in os.environ.items() if name not in removed},
        "APP_ENV": "production",
        "SECRET_KEY": uuid.uuid4().hex * 2,
        "DATABASE_URL": database_url,
        "REDIS_URL": app.config["REDIS_URL"],
        "TRUSTED_PROXY_HOPS": "1",
        "DATABASE_POOL_SIZE": "5",
        "DATABASE_MAX_OVERFLOW": "5",
        "WEB_CONCURRENCY": "1",
        "ACCESS_LOG": "0",
        "CREEM_API_KEY": "creem_test_scale_out",
        "CREEM_WEBHOOK_SECRET": "whsec_scale_out",
        "CREEM_PRODUCT_PRO_MONTHLY": "prod_scale_out_monthly",
        "CREEM_PRODUCT_PRO_YEARLY": "prod_scale_out_yearly",
        "MAIL_URL": "smtp://127.0.0.1:1",
        "RATELIMIT_KEY_PREFIX": f"scale-out-{uuid.uuid4().hex[:8]}",
        "RATELIMIT_API": "100000 per minute",
        "RATELIMIT_CONSUME": "100000 per minute",
        "RATELIMIT_AUTH": "100000 per minute",
        "GENERATION_PROVIDER": "local",
        "PYTHONUNBUFFERED": "1",
        **s3_environment(*s3),
    }


def start_dyno(
    name: str, command: list[str], environment: dict[str, str], root: Path, port: int | None = None
) -> Dyno:
    """Start one process with an INSTANCE_PATH and TMPDIR of its own."""
    instance = root / name / "instance"
    scratch = root / name / "tmp"
    instance.mkdir(parents=True)
    scratch.mkdir()
    log = root / name / "output.log"
    env = {**environment, "DYNO": name, "INSTANCE_PATH": str(instance), "TMPDIR": str(scratch)}
    if port is not None:
        env["BIND"] = f"127.0.0.1:{port}"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=PROJECT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Dyno(name, process, instance, log, port)


def wait_for_web(dyno: Dyno) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if dyno.process.poll() is not None:
            pytest.fail(f"{dyno.name} exited:\n{dyno.log_tail()}")
        try:
            if (
                httpx.get(f"{dyno.url}/login", headers=router_headers(), timeout=2).status_code
                == 200
            ):
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    pytest.fail(f"{dyno.name} did not answer:\n{dyno.log_tail()}")


def wait_for_worker_heartbeat(web: Dyno, worker: Dyno) -> None:
    """/healthz on a web dyno turns 200 once the worker dyno beats."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            pytest.fail(f"the worker exited:\n{worker.log_tail()}")
        response = httpx.get(f"{web.url}/healthz", headers=router_headers(), timeout=5)
        if response.status_code == 200:
            return
        time.sleep(0.3)
    pytest.fail(f"no healthy worker: {response.text}\n{worker.log_tail()}")


def stop(dyno: Dyno) -> None:
    """SIGTERM to the process group (gunicorn's arbiter, rq's work horse), then SIGKILL."""
    if dyno.process.poll() is not None:
        return
    os.killpg(dyno.process.pid, signal.SIGTERM)
    try:
        dyno.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(dyno.process.pid, signal.SIGKILL)
        dyno.process.wait(timeout=5)


@pytest.fixture(scope="module")
def dynos(
    dyno_environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Dyno]]:
    """web.1, web.2 and worker.1, for the module's tests."""
    tmp_path = tmp_path_factory.mktemp("dynos")
    gunicorn = [sys.executable, "-m", "gunicorn", "app:app", "--config", "gunicorn.conf.py"]
    started: dict[str, Dyno] = {}
    try:
        started["web.1"] = start_dyno("web.1", gunicorn, dyno_environment, tmp_path, free_port())
        started["web.2"] = start_dyno("web.2", gunicorn, dyno_environment, tmp_path, free_port())
        started["worker.1"] = start_dyno(
            "worker.1", [sys.executable, "worker.py"], dyno_environment, tmp_path
        )
        for name in ("web.1", "web.2"):
            wait_for_web(started[name])
        wait_for_worker_heartbeat(started["web.1"], started["worker.1"])
        yield started
    finally:
        for dyno in started.values():
            stop(dyno)


def committed_user(app, name: str) -> tuple[int, str]:
    with app.app_context():
        user = accounts.register_user(
            f"{name}-{uuid.uuid4().hex[:8]}@{CONCURRENCY_DOMAIN}", PASSWORD, verified=True
        )
        db.session.commit()
        return user.id, user.email


class Browser:
    """A signed-in browser session behind the router. Session cookies are Secure (the app
    believes the router: the client spoke https), so they are carried by hand here."""

    def __init__(self, web: Dyno, email: str) -> None:
        self.cookies: dict[str, str] = {}
        page = self.get(web, "/login")
        response = self.post(
            web,
            "/login",
            data={"email": email, "password": PASSWORD, "csrf_token": csrf_token(page.text)},
        )
        assert response.status_code == 302, response.text

    def headers(self, web: Dyno, path: str) -> dict[str, str]:
        return {
            **router_headers(),
            "Referer": f"https://127.0.0.1:{web.port}{path}",
            "Cookie": "; ".join(f"{name}={value}" for name, value in self.cookies.items()),
        }

    def _remember(self, response: httpx.Response) -> httpx.Response:
        self.cookies.update(response.cookies.items())
        return response

    def get(self, web: Dyno, path: str, **headers: str) -> httpx.Response:
        return self._remember(
            httpx.get(
                f"{web.url}{path}", timeout=10, headers={**self.headers(web, path), **headers}
            )
        )

    def post(self, web: Dyno, path: str, **kwargs) -> httpx.Response:
        return self._remember(
            httpx.post(f"{web.url}{path}", timeout=30, headers=self.headers(web, path), **kwargs)
        )

    def socket(self, web: Dyno) -> simple_websocket.Client:
        headers = {**self.headers(web, "/ws/credits"), "Origin": f"https://127.0.0.1:{web.port}"}
        return SocketClient.connect(f"ws://127.0.0.1:{web.port}/ws/credits", headers=headers)


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def receive_counter(ws: simple_websocket.Client, timeout: float = 10.0) -> str | None:
    message = ws.receive(timeout=timeout)
    if message is None:
        return None
    match = re.search(r"<strong[^>]*>([^<]+)</strong>", message)
    assert match and 'id="sidebar-credits"' in message, message
    return match.group(1)


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_behind_the_router_http_is_redirected_and_https_gets_hsts(dynos):
    web = dynos["web.1"]
    plain = httpx.get(
        f"{web.url}/login?next=%2Fdashboard", headers=router_headers(proto="http"), timeout=10
    )
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"https://127.0.0.1:{web.port}/login?next=/dashboard"
    secure = httpx.get(f"{web.url}/login", headers=router_headers(), timeout=10)
    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Secure" in secure.headers["Set-Cookie"]


def test_upload_on_one_web_dyno_runs_on_the_worker_and_is_fetched_on_the_other(app, dynos, s3):
    web_a, web_b = dynos["web.1"], dynos["web.2"]
    user_id, email = committed_user(app, "scale")
    on_a, on_b = Browser(web_a, email), Browser(web_b, email)
    tab = on_b.socket(web_b)
    try:
        assert receive_counter(tab) == "6/6"
        feature = FEATURES["interior"]
        form = on_a.get(web_a, f"/dashboard/{feature.slug}")
        generation_id = re.search(r'name="generation_id"[^>]*value="([^"]+)"', form.text)
        response = on_a.post(
            web_a,
            f"/dashboard/{feature.slug}",
            data={
                **FORMS["interior"],
                "generation_id": generation_id.group(1),
                "csrf_token": csrf_token(form.text),
            },
            files={"image": ("room.png", photo(size=(320, 240)), "image/png")},
        )
        assert response.status_code == 302, response.text
        assert receive_counter(tab) == "5/6"

        generation_pk = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
        deadline = time.monotonic() + GENERATION_TIMEOUT_SECONDS
        progress = on_b.get(
            web_b, f"/dashboard/generations/{generation_pk}", **{"HX-Request": "true"}
        )
        while "Done!" not in progress.text and time.monotonic() < deadline:
            assert "flash-error" not in progress.text, progress.text
            time.sleep(0.3)
            progress = on_b.get(
                web_b, f"/dashboard/generations/{generation_pk}", **{"HX-Request": "true"}
            )
        assert "Done!" in progress.text, dynos["worker.1"].log_tail()

        result = on_b.get(web_b, f"/dashboard/generations/{generation_pk}/output")
        assert result.status_code == 200 and result.headers["Content-Type"].startswith("image/")
        assert result.headers["Cache-Control"] == "private, max-age=3600"
        with app.app_context():
            generation = db.session.execute(
                select(Generation).where(Generation.id == generation_pk)
            ).scalar_one()
            assert (generation.user_id, generation.status) == (user_id, "succeeded")
            input_key, output_key = generation.input_path, generation.output_path
            variants = generation.image_variants
            db.session.remove()
        copies = [
            variant_key(key, width)
            for which, key in (("input", input_key), ("output", output_key))
            for width in variants[which]
        ]
        assert variants["input"] and variants["output"]
        assert object_keys(*s3) == sorted(
            f"generations/{key}" for key in [input_key, output_key, *copies]
        )
        thumbnail = on_b.get(
            web_b, f"/dashboard/generations/{generation_pk}/output/{variants['output'][0]}w.webp"
        )
        assert thumbnail.status_code == 200
        assert thumbnail.headers["Content-Type"] == "image/webp"
        stranger = Browser(web_b, committed_user(app, "stranger")[1])
        assert (
            stranger.get(web_b, f"/dashboard/generations/{generation_pk}/output").status_code == 404
        )
    finally:
        tab.close()
    for dyno in dynos.values():
        assert files_under(dyno.instance) == [], f"{dyno.name} wrote to its disk"
        assert files_under(dyno.instance.parent / "tmp") == [], f"{dyno.name} left scratch files"


def test_a_few_hundred_consumes_through_both_web_dynos_keep_the_ledger(app, dynos):
    web_urls = [dynos["web.1"].url, dynos["web.2"].url]
    tokens: dict[int, str] = {}
    with app.app_context():
        for _ in range(LOAD_USERS):
            user = accounts.register_user(
                f"load-{uuid.uuid4().hex[:10]}@{CONCURRENCY_DOMAIN}", PASSWORD, verified=True
            )
            db.session.flush()
            tokens[user.id] = accounts.create_api_token(user.id, "load")[1]
        db.session.commit()

    def consume(attempt: tuple[int, int]) -> tuple[int, int]:
        index, user_id = attempt
        web = web_urls[(index + index // LOAD_USERS) % 2]
        response = httpx.post(
            f"{web}/api/user/credits/consume",
            json={"feature": "video"},
            timeout=30,
            headers={
                **router_headers(f"198.51.100.{index % 200}"),
                "Authorization": f"Bearer {tokens[user_id]}",
            },
        )
        return user_id, response.status_code

    # Each user's attempts alternate between the two web dynos and overlap in time.
    attempts = list(enumerate(user_id for _ in range(CONSUMES_PER_USER) for user_id in tokens))
    with ThreadPoolExecutor(LOAD_THREADS) as pool:
        outcomes = list(pool.map(consume, attempts))

    assert len(outcomes) == LOAD_USERS * CONSUMES_PER_USER
    by_user = {
        user_id: Counter(status for owner, status in outcomes if owner == user_id)
        for user_id in tokens
    }
    assert all(
        counts == Counter({200: 6, 402: CONSUMES_PER_USER - 6}) for counts in by_user.values()
    ), by_user
    with app.app_context():
        balances = (
            db.session.execute(select(User.credits_remaining).where(User.id.in_(tokens)))
            .scalars()
            .all()
        )
        assert balances == [0] * LOAD_USERS
        report = audit_ledger()
        db.session.remove()
    assert report.ok, report.violations
