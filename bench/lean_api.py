"""The HTTP ceiling of the credit API on this stack: its two hot endpoints written with
nothing but their work, served by the same gunicorn configuration as the app.

`bench/credits.py` serves this beside the app (`gunicorn bench.lean_api:app`) and measures
both in the same run, side by side, so that the app's CPU per request can be read against
what Flask, psycopg and Redis cost on this box at that moment: the box's speed drifts by half
between runs, a ratio measured at once does not.

Each endpoint does the app's work and no more:
- `GET /api/user/credits`: the bearer token's owner and balance (the app's TOKEN_OWNER_SQL,
  in autocommit), one API rate-limit window in Redis (the app's Lua script), JSON.
- `POST /api/user/credits/consume`: the token's owner, two rate-limit windows, the JSON body,
  then in one transaction the app's own statements (LOCK_BALANCE_SQL, then
  POST_FIRST_USE_DRAW_SQL with the consume's analytics event), COMMIT, one PUBLISH, JSON.
What it leaves out is what makes the app a product: request ids and the request log,
metrics, security headers, CSRF, sessions, compression, validation beyond the two fields,
idempotent replays, the rollout, notifications, expired-lot handling. It answers 402 when the
balance is short and 409 when the write's guard says no (a reused generation id, or lapsed
lots), and never runs in production.
"""

from __future__ import annotations

import hashlib
import json
import queue
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import redis
from flask import Flask, Response, request

from bench.raw_consume import consume_params
from credit_app.platform.config import load_config
from credit_app.platform.local_services import provision
from credit_app.services.accounts import TOKEN_OWNER_SQL
from credit_app.services.credits import LOCK_BALANCE_SQL, POST_FIRST_USE_DRAW_SQL
from credit_app.services.live import channel_for
from credit_app.web.api_limits import _HIT_WINDOWS

POOL_SIZE = 16  # the app's DATABASE_POOL_SIZE default
WINDOW_SECONDS = 60

config = load_config()
config.update(provision(config))
app = Flask(__name__)
_redis = redis.Redis.from_url(config["REDIS_URL"], socket_timeout=0.5, socket_connect_timeout=0.5)
_hit_windows = _redis.register_script(_HIT_WINDOWS)
_connections: queue.LifoQueue | None = None


def _connection_class() -> type[psycopg.Connection]:
    if "gevent.monkey" in sys.modules:
        from credit_app.platform.database import GeventConnection

        return GeventConnection
    return psycopg.Connection


@contextmanager
def _connection() -> Iterator[psycopg.Connection]:
    """One of POOL_SIZE connections, opened on first use in this worker."""
    global _connections
    if _connections is None:
        dsn = config["SQLALCHEMY_DATABASE_URI"].replace("postgresql+psycopg://", "postgresql://")
        _connections = queue.LifoQueue()
        for _ in range(POOL_SIZE):
            _connections.put(_connection_class().connect(dsn))
    connection = _connections.get(timeout=5)
    try:
        yield connection
    finally:
        _connections.put(connection)


def _json(payload: dict, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _caller() -> tuple | None:
    token = request.headers.get("Authorization", "").partition(" ")[2]
    with _connection() as connection:
        connection.autocommit = True
        try:
            return connection.execute(
                TOKEN_OWNER_SQL, {"token_hash": hashlib.sha256(token.encode()).hexdigest()}
            ).fetchone()
        finally:
            connection.autocommit = False


def _spend_budget(user_id: int, *settings: str) -> bool:
    window = int(time.time()) // WINDOW_SECONDS
    counts = _hit_windows(
        keys=[f"lean:{setting}:{user_id}:{window}" for setting in settings],
        args=[WINDOW_SECONDS + 1] * len(settings),
    )
    return all(int(count) <= 1_000_000 for count in counts)


@app.get("/api/user/credits")
def get_credits() -> Response:
    caller = _caller()
    if caller is None:
        return _json({"error": {"code": "unauthorized", "message": "No such token."}}, 401)
    if not _spend_budget(caller[0], "api"):
        return _json({"error": {"code": "too_many_requests", "message": "Slow down."}}, 429)
    return _json(
        {
            "remaining": caller[2],
            "total": caller[3],
            "subscription_status": caller[4],
            "last_updated": caller[5].isoformat(),
        }
    )


@app.post("/api/user/credits/consume")
def consume() -> Response:
    caller = _caller()
    if caller is None:
        return _json({"error": {"code": "unauthorized", "message": "No such token."}}, 401)
    user_id = caller[0]
    if not _spend_budget(user_id, "api", "consume"):
        return _json({"error": {"code": "too_many_requests", "message": "Slow down."}}, 429)
    body = request.get_json()
    feature, generation_id = body["feature"], body["generation_id"]
    params = {"user_id": user_id, "generation_id": generation_id}
    with _connection() as connection:
        try:
            remaining, _, plan = connection.execute(LOCK_BALANCE_SQL, params).fetchone()
            if remaining < 1:
                connection.rollback()
                return _json(
                    {"error": {"code": "insufficient_credits", "message": "No credits left."}}, 402
                )
            balance_after = remaining - 1
            posted = connection.execute(
                POST_FIRST_USE_DRAW_SQL,
                consume_params(user_id, generation_id, feature, plan, balance_after),
            ).fetchone()
            if posted is None:  # the id was used, or lots lapsed (the app tells which)
                connection.rollback()
                return _json({"error": {"code": "conflict", "message": "Not written."}}, 409)
            entry_id = posted[0]
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
    _redis.publish(
        channel_for(user_id),
        json.dumps(
            {
                "type": "CREDIT_CONSUMED",
                "user_id": str(user_id),
                "remaining_credits": balance_after,
                "feature": feature,
                "total": caller[3],
                "subscription_status": plan,
                "ledger_id": entry_id,
            }
        ),
    )
    return _json(
        {"success": True, "remaining_credits": balance_after, "message": "Credit consumed."}
    )
