"""Profile one request in-process: where a consume, a balance GET or a page spends its CPU.

Runs the real app (the embedded servers unless DATABASE_URL / REDIS_URL are set) under
pyinstrument, calling the WSGI app directly with a prepared environ, so what is measured is
Flask, the extensions, the services and their round trips to PostgreSQL and Redis; not
gunicorn and not an HTTP client.

    python -m bench.profile_request --requests 2000 --path consume
    python -m bench.profile_request --requests 2000 --path balance --html out.html
    python -m bench.profile_request --requests 300 --path dashboard --no-profile
    python -m bench.profile_request --requests 200 --path consume --calls

`--calls` counts instead of timing: the Python functions and C builtins each request calls,
in total and by function (`--top`), and by function of credit_app including what they call
(`--ours`). On this box the CPU time of the same request varies by half from one run to the
next, while its call count does not change at all, and tracks its CPU closely; it is the
figure to compare a change by. The request log runs as in production (written to /dev/null).

The API paths send the user's bearer token; the pages (the dashboard, a feature page) the
session cookie /login would set (bench.load.session_cookies), as the load test's browsers do.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import secrets
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from credit_app import create_app
from credit_app.models import User
from credit_app.platform.extensions import db
from credit_app.services import accounts, credits

EMAIL = "bench-profile@bench.example.com"


def _prepare(app, email: str = EMAIL) -> str:
    with app.app_context():
        user = accounts.find_user_by_email(email)
        if user is None:
            user = accounts.register_user(email, secrets.token_urlsafe(24))
        if user.credits_remaining < 500_000:
            credits.grant_credits(user.id, 100_000, "profiling balance")
        _, token = accounts.create_api_token(user.id, "profile")
        db.session.commit()
        return token


PAGES = {"dashboard": "/dashboard", "feature": "/dashboard/redecorate-room"}
API = {"consume": "/api/user/credits/consume", "balance": "/api/user/credits"}


def _page_cookie(app, token: str) -> str:
    """The session cookie of the token's owner, as /login would set it."""
    from bench.credits import BenchUser
    from bench.load import session_cookies

    with app.app_context():
        owner = accounts.token_owner(token)
        user = BenchUser(owner.id, db.session.get(User, owner.id).email, token)
        db.session.rollback()
    return session_cookies(app, [user], "127.0.0.1:5000")[0]


def _environ(path: str, token: str, body: bytes | None, cookie: str | None = None) -> dict:
    environ = {
        "REQUEST_METHOD": "POST" if body is not None else "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "5000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "HTTP_ACCEPT": "application/json",
    }
    if cookie is not None:
        from bench.load import BROWSER_AGENT

        del environ["HTTP_AUTHORIZATION"]
        environ.update(
            HTTP_COOKIE=cookie,
            HTTP_ACCEPT="text/html",
            HTTP_USER_AGENT=BROWSER_AGENT,
            HTTP_HOST="127.0.0.1:5000",
        )
    if body is not None:
        environ.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(body)))
    return environ


def _call(app, path: str, token: str, consume: bool, cookie: str | None = None) -> int:
    body = (
        json.dumps({"feature": "interior", "generation_id": uuid.uuid4().hex}).encode()
        if consume
        else None
    )
    environ = _environ(path, token, body, cookie)
    environ["wsgi.input"] = io.BytesIO(body or b"")
    status: list[str] = []
    chunks = app(environ, lambda s, h, exc_info=None: status.append(s))
    b"".join(chunks)
    getattr(chunks, "close", lambda: None)()
    return int(status[0].split()[0])


@dataclass
class CallCounts:
    """Calls made while serving `requests` requests: in all, by function (Python functions as
    file:name, C builtins as C:name), and inclusively by credit_app function."""

    requests: int
    total: int
    by_function: Counter[str]
    ours_inclusive: Counter[str]

    def report(self, path: str, top: int, ours: bool) -> str:
        lines = [f"{path}: {self.total / self.requests:.0f} calls per request"]
        table = self.ours_inclusive if ours else self.by_function
        lines += [f"{count / self.requests:8.1f}  {name}" for name, count in table.most_common(top)]
        return "\n".join(lines)


def count_calls(serve: Callable[[], object], requests: int) -> CallCounts:
    """Count the calls of `requests` runs of `serve` with a profile hook (sys.setprofile)."""
    by_function: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    stack: list[str | None] = []
    total = 0
    package = str(Path(__file__).resolve().parent.parent / "credit_app") + os.sep

    def hook(frame, event, arg) -> None:
        nonlocal total
        if event == "call" or event == "c_call":
            total += 1
            for name in set(stack):
                if name is not None:
                    ours[name] += 1
            if event == "c_call":
                by_function["C:" + getattr(arg, "__qualname__", "?")] += 1
                return
            code = frame.f_code
            by_function[f"{os.path.basename(code.co_filename)}:{code.co_name}"] += 1
            stack.append(
                f"{code.co_filename[len(package) :]}:{code.co_name}"
                if code.co_filename.startswith(package)
                else None
            )
        elif event == "return" and stack:
            stack.pop()

    sys.setprofile(hook)
    try:
        for _ in range(requests):
            serve()
    finally:
        sys.setprofile(None)
    return CallCounts(requests, total, by_function, ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--path", choices=(*API, *PAGES), default="consume")
    parser.add_argument("--html", help="write pyinstrument's HTML report here")
    parser.add_argument("--no-profile", action="store_true", help="only time the requests")
    parser.add_argument(
        "--calls",
        action="store_true",
        help="count the calls per request instead of timing (deterministic)",
    )
    parser.add_argument(
        "--top", type=int, default=25, help="with --calls: how many functions to list (default 25)"
    )
    parser.add_argument(
        "--ours",
        action="store_true",
        help="with --calls: list credit_app's functions with what they call",
    )
    parser.add_argument(
        "--email",
        default=EMAIL,
        help="the user to act as (registered if missing). The default user "
        "has every earlier run's ledger rows; a page's history query "
        "reads the newest of them, so use a fresh or bench-<n> address "
        "to profile a page as a typical user sees it",
    )
    args = parser.parse_args()
    os.environ.setdefault("RATELIMIT_API", "1000000 per minute")
    os.environ.setdefault("RATELIMIT_CONSUME", "1000000 per minute")
    os.environ.setdefault("ACCESS_LOG", "0")
    app = create_app()
    token = _prepare(app, args.email)
    consume = args.path == "consume"
    path = API.get(args.path) or PAGES[args.path]
    cookie = _page_cookie(app, token) if args.path in PAGES else None
    for _ in range(200):
        status = _call(app, path, token, consume, cookie)
        assert status == 200, f"{path} answered {status}"
    if args.calls:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            counts = count_calls(lambda: _call(app, path, token, consume, cookie), args.requests)
        print(counts.report(path, args.top, args.ours))
        return
    profiler = None
    if not args.no_profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        profiler.start()
    started_cpu, started = time.process_time(), time.perf_counter()
    for _ in range(args.requests):
        _call(app, path, token, consume, cookie)
    cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
    if profiler is not None:
        profiler.stop()
        if args.html:
            with open(args.html, "w") as out:
                out.write(profiler.output_html())
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    print(
        f"{args.requests} x {path}: {cpu / args.requests * 1000:.2f} ms CPU and "
        f"{wall / args.requests * 1000:.2f} ms wall per request (in-process)"
    )


if __name__ == "__main__":
    main()
