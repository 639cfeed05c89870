"""Every Redis client of the app, made by one factory with a time budget, and the rq queues.

Each client has a socket timeout and a connect timeout, so a hung Redis (a partition, a
failover, a paused server) costs a request at most its budget instead of freezing it:

- `app`: requests and jobs (live publish, enqueue after commit, admin pages): 0.5 s per
  command; a refused or dropped connection is retried once at once (a pooled connection that
  a Redis restart closed reconnects), a timeout is not.
- `monitoring`: health checks and metrics: 0.5 s, no retry, so an outage is reported at once.
- `hub`: the live hub's subscription: it pings every few seconds and gives up on silence.
- `worker`: rq's blocking dequeue; rq raises the socket timeout above its BLPOP timeout.
- the rate limiter gets `limiter_storage_options` (same budget as `app`).

`rediss://` (TLS) URLs work everywhere. Heroku Redis presents a self-signed certificate, so
certificates are not verified by default (`REDIS_SSL_CERT_REQS=none`); set `required` (and
`REDIS_SSL_CA_CERTS`) for a Redis with a certificate your CA bundle trusts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask, current_app
from redis.backoff import NoBackoff
from redis.retry import Retry

# A worker takes from the first non-empty queue in this order: the short maintenance jobs
# (sweeps, heartbeat) first, so a backlog of generations never starves them.
SSL_CERT_REQS = ("none", "optional", "required")


@dataclass(frozen=True)
class RedisBudget:
    """How long one Redis command may take: socket and connect timeouts, and how many times a
    failed connection is retried at once. A command gives up after at most
    `worst_case_seconds`."""

    socket_timeout: float | None
    connect_timeout: float
    retries: int

    @property
    def worst_case_seconds(self) -> float:
        per_try = self.connect_timeout + (self.socket_timeout or 0)
        return (1 + self.retries) * per_try


BUDGETS: dict[str, RedisBudget] = {
    "app": RedisBudget(socket_timeout=0.5, connect_timeout=0.5, retries=1),
    "monitoring": RedisBudget(socket_timeout=0.5, connect_timeout=0.5, retries=0),
    "hub": RedisBudget(socket_timeout=2.0, connect_timeout=1.0, retries=0),
    "worker": RedisBudget(socket_timeout=None, connect_timeout=2.0, retries=1),
}


def connection_options(
    url: str, budget: RedisBudget, ssl_cert_reqs: str = "none", ssl_ca_certs: str | None = None
) -> dict[str, Any]:
    """The keyword arguments `redis.from_url(url, ...)` needs for `budget` (and TLS for a
    `rediss://` URL). Raises ValueError for an unknown `ssl_cert_reqs`."""
    options: dict[str, Any] = {
        "socket_timeout": budget.socket_timeout,
        "socket_connect_timeout": budget.connect_timeout,
        "retry": Retry(NoBackoff(), budget.retries, supported_errors=(redis.ConnectionError,)),
        "health_check_interval": 30,
    }
    if url.startswith("rediss://"):
        if ssl_cert_reqs not in SSL_CERT_REQS:
            raise ValueError(f"REDIS_SSL_CERT_REQS must be one of {', '.join(SSL_CERT_REQS)}")
        options["ssl_cert_reqs"] = ssl_cert_reqs
        if ssl_ca_certs:
            options["ssl_ca_certs"] = ssl_ca_certs
    return options


def make_client(
    url: str, purpose: str, ssl_cert_reqs: str = "none", ssl_ca_certs: str | None = None
) -> redis.Redis:
    """A Redis client for `purpose` (a key of BUDGETS). Raises KeyError for another purpose,
    ValueError for an unknown `ssl_cert_reqs`."""
    return redis.Redis.from_url(
        url, **connection_options(url, BUDGETS[purpose], ssl_cert_reqs, ssl_ca_certs)
    )


def client_for(app: Flask, purpose: str) -> redis.Redis:
    """A new client of `app`'s Redis for `purpose`, with the app's TLS settings."""
    return make_client(
        app.config["REDIS_URL"],
        purpose,
        app.config["REDIS_SSL_CERT_REQS"],
        app.config["REDIS_SSL_CA_CERTS"],
    )


def limiter_storage_options(
    redis_url: str, ssl_cert_reqs: str = "none", ssl_ca_certs: str | None = None
) -> dict[str, Any]:
    """RATELIMIT_STORAGE_OPTIONS: the `app` budget, so a hung Redis costs a rate-limit check
    one timeout, after which the limiter counts in memory (see config.py)."""
    options = connection_options(redis_url, BUDGETS["app"], ssl_cert_reqs, ssl_ca_certs)
    options.pop("health_check_interval")
    return options


def init_redis(app: Flask) -> None:
    app.extensions["redis"] = client_for(app, "app")


def get_redis() -> redis.Redis:
    """The app's client (`app` budget): for requests and jobs, never for blocking reads."""
    return current_app.extensions["redis"]
