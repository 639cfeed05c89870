"""Profile one request in-process: where a consume, a balance GET or a page spends its CPU.

Runs the real app (the embedded servers unless DATABASE_URL / REDIS_URL are set) under
pyinstrument, calling the WSGI app directly with a prepared environ, so what is measured is
Flask, the extensions, the services and their round trips to PostgreSQL and Redis; not
gunicorn and not an HTTP client.

    python -m bench.profile_request --requests 2000 --path consume
    python -m bench.profile_request --requests 2000 --path balance --html out.html
    python -m bench.profile_request --requests 300 --path dashboard --no-profile

The API paths send the user's bearer token; the pages (the dashboard, a feature page) the
session cookie /login would set (bench.load.session_cookies), as the load test's browsers do.
"""

from __future__ import annotations

import argparse
import io
import json
import secrets
import sys
import time
import uuid

from credit_app import create_app
from credit_app.extensions import db
from credit_app.models import User
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
        "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "5000", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.multithread": True,
        "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0),
        "HTTP_AUTHORIZATION": f"Bearer {token}", "HTTP_ACCEPT": "application/json",
    }
    if cookie is not None:
        from bench.load import BROWSER_AGENT

        del environ["HTTP_AUTHORIZATION"]
        environ.update(HTTP_COOKIE=cookie, HTTP_ACCEPT="text/html", HTTP_USER_AGENT=BROWSER_AGENT,
                       HTTP_HOST="127.0.0.1:5000")
    if body is not None:
        environ.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(body)))
    return environ


def _call(app, path: str, token: str, consume: bool, cookie: str | None = None) -> int:
    body = json.dumps({"feature": "interior", "generation_id": uuid.uuid4().hex}).encode() \
        if consume else None
    environ = _environ(path, token, body, cookie)
    environ["wsgi.input"] = io.BytesIO(body or b"")
    status: list[str] = []
    chunks = app(environ, lambda s, h, exc_info=None: status.append(s))
    b"".join(chunks)
    getattr(chunks, "close", lambda: None)()
    return int(status[0].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--path", choices=(*API, *PAGES), default="consume")
    parser.add_argument("--html", help="write pyinstrument's HTML report here")
    parser.add_argument("--no-profile", action="store_true", help="only time the requests")
    parser.add_argument("--email", default=EMAIL,
                        help="the user to act as (registered if missing). The default user "
                             "has every earlier run's ledger rows; a page's history query "
                             "reads the newest of them, so use a fresh or bench-<n> address "
                             "to profile a page as a typical user sees it")
    args = parser.parse_args()
    import os

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
    print(f"{args.requests} x {path}: {cpu / args.requests * 1000:.2f} ms CPU and "
          f"{wall / args.requests * 1000:.2f} ms wall per request (in-process)")


if __name__ == "__main__":
    main()
