"""Prometheus metrics kept in Redis, so every gunicorn worker and host adds to the same numbers.

Counted per request, in memory: each process adds its counts up and sends them to Redis in
one pipeline at most every FLUSH_INTERVAL_SECONDS (and before it renders a scrape), so a
request pays no Redis round trip for its metrics and a Redis outage never fails a request
(the counts wait for the next flush):
- `http_requests_total{method,status}` — every response; the error rate is the share of 5xx;
- `credit_operations_total{operation,outcome}` and `credit_operation_duration_seconds` for
  the requests that check, spend or change credits: the API's balance, consume and grant,
  starting a generation (a reservation), and admin adjustments. The web layer marks such a
  request (`mark_credit_operation`); this module knows no view.
Read at scrape time: the gauges the layers above register (`add_gauges`, `add_redis_gauges`:
rq queues and workers, the webhook lag, the analytics backlog), and whether Redis answered.
This module is platform: it imports nothing of the domain or the web layer.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis
from flask import Flask, Response, current_app, g, request

from credit_app.platform.health import ops_redis

log = logging.getLogger(__name__)

PREFIX = "credit_app:metrics"
HTTP_KEY = f"{PREFIX}:http_requests"
OPERATIONS_KEY = f"{PREFIX}:credit_operations"
LATENCY_KEY = f"{PREFIX}:credit_latency"
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CREDIT_OPERATIONS = frozenset({"balance", "consume", "grant", "adjust", "reserve"})
OUTCOMES_BY_STATUS = {
    402: "insufficient_credits",
    409: "conflict",
    429: "rate_limited",
    401: "denied",
    403: "denied",
}
# Where the current request's mark is kept on `flask.g`.
_MARK = "credit_operation_mark"


def mark_credit_operation(operation: str, outcome: str | None = None) -> None:
    """Count the current request as the credit operation `operation` (one of
    CREDIT_OPERATIONS), with `outcome`, or when that is None the outcome its response's status
    tells (outcome_of_status). A later mark in the same request replaces an earlier one.

    Raises ValueError for an operation not in CREDIT_OPERATIONS.
    """
    if operation not in CREDIT_OPERATIONS:
        raise ValueError(f"{operation!r} is not a credit operation")
    setattr(g, _MARK, (operation, outcome))


def outcome_of_status(status: int) -> str:
    """ok, insufficient_credits, conflict, rate_limited, denied, invalid or error."""
    if status < 400:
        return "ok"
    if status >= 500:
        return "error"
    return OUTCOMES_BY_STATUS.get(status, "invalid")


def bucket_for(seconds: float) -> str:
    for bound in BUCKETS:
        if seconds <= bound:
            return str(bound)
    return "+Inf"


FLUSH_INTERVAL_SECONDS = 1.0


class PendingCounts:
    """One app's counts in this process not yet sent to its Redis; `add` is cheap, `flush`
    sends them all."""

    def __init__(self, connection: redis.Redis) -> None:
        self._connection = connection
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._sums: Counter[str] = Counter()
        self._flusher_pid: int | None = None
        self._failing = False

    def add(
        self, method: str, status: int, operation: str | None, outcome: str | None, seconds: float
    ) -> None:
        if self._flusher_pid != os.getpid():
            self._start_flusher()
        with self._lock:
            self._counts[(HTTP_KEY, f"{method}|{status}")] += 1
            if operation is not None:
                self._counts[(OPERATIONS_KEY, f"{operation}|{outcome}")] += 1
                self._counts[(LATENCY_KEY, f"{operation}|{bucket_for(seconds)}")] += 1
                self._sums[f"{operation}|sum"] += seconds

    def take(self) -> tuple[Counter, Counter]:
        with self._lock:
            counts, sums = self._counts, self._sums
            self._counts, self._sums = Counter(), Counter()
        return counts, sums

    def put_back(self, counts: Counter, sums: Counter) -> None:
        with self._lock:
            self._counts.update(counts)
            self._sums.update(sums)

    def flush(self) -> None:
        """Send the pending counts in one pipeline; on a Redis error keep them for next time
        (logged once per outage, not once a second)."""
        counts, sums = self.take()
        if not counts and not sums:
            return
        try:
            pipeline = self._connection.pipeline(transaction=False)
            for (key, field), value in counts.items():
                pipeline.hincrby(key, field, value)
            for field, value in sums.items():
                pipeline.hincrbyfloat(LATENCY_KEY, field, value)
            pipeline.execute()
        except redis.RedisError as exc:
            self.put_back(counts, sums)
            if not self._failing:
                log.warning("could not flush request metrics (kept until Redis answers): %s", exc)
            self._failing = True
        else:
            self._failing = False

    def _start_flusher(self) -> None:
        """One daemon thread per process (a forked worker starts its own, dropping what it
        inherited from its parent, which the parent counts)."""
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()
            self._counts.clear()
            self._sums.clear()

        def run() -> None:
            while True:
                time.sleep(FLUSH_INTERVAL_SECONDS)
                self.flush()

        threading.Thread(target=run, name="metrics-flusher", daemon=True).start()
        atexit.register(self.flush)


def pending(app: Flask | None = None) -> PendingCounts:
    """The pending counts of `app` (default: the current app), made on first use with its
    fail-fast Redis."""
    app = app or current_app._get_current_object()
    counts = app.extensions.get("metrics_pending")
    if counts is None:
        with app.app_context():
            counts = app.extensions.setdefault("metrics_pending", PendingCounts(ops_redis()))
    return counts


def record_request(
    method: str, status: int, operation: str | None, outcome: str | None, seconds: float
) -> None:
    """Add one request to this process's pending counts."""
    pending().add(method, status, operation, outcome, seconds)


def discard_pending() -> None:
    """Forget this process's unsent counts (tests start from zero)."""
    pending().take()


def init_request_metrics(app: Flask) -> None:
    """Time every request and count it when its response is ready."""

    @app.before_request
    def start_timer() -> None:
        context = g._get_current_object().__dict__
        context.pop(_MARK, None)
        context["metrics_started"] = time.perf_counter()

    @app.after_request
    def count_request(response: Response) -> Response:
        context = g._get_current_object().__dict__
        started = context.pop("metrics_started", None)
        operation, outcome = context.pop(_MARK, (None, None))
        current = request._get_current_object()
        if started is None or current.endpoint == "static":
            return response
        if operation is not None and outcome is None:
            outcome = outcome_of_status(response.status_code)
        pending(app).add(
            current.method, response.status_code, operation, outcome, time.perf_counter() - started
        )
        return response


def metric_labels(**labels: object) -> str:
    """`{name="value",...}`, escaped as the Prometheus text format wants."""

    def escape(value: object) -> str:
        return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{name}="{escape(value)}"' for name, value in labels.items()) + "}"


def metric_family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> list[str]:
    """One metric's HELP and TYPE lines, then its `samples` (lines)."""
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


@dataclass
class GaugeSources:
    """What an app's /metrics reads at scrape time besides the request counts: sources that
    read Redis (skipped, with `redis_up 0`, when it does not answer) and the others."""

    redis: list[Callable[[redis.Redis], Iterable[str]]] = field(default_factory=list)
    other: list[Callable[[], Iterable[str]]] = field(default_factory=list)


def gauge_sources(app: Flask | None = None) -> GaugeSources:
    app = app or current_app._get_current_object()
    return app.extensions.setdefault("metrics_gauges", GaugeSources())


def add_redis_gauges(app: Flask, source: Callable[[redis.Redis], Iterable[str]]) -> None:
    """Have `app`'s scrapes include the lines `source` reads from Redis (given the metrics'
    fail-fast connection); a RedisError leaves them out and reports `redis_up 0`."""
    gauge_sources(app).redis.append(source)


def add_gauges(app: Flask, source: Callable[[], Iterable[str]]) -> None:
    """Have `app`'s scrapes include the lines `source` returns (read in the app context, e.g.
    from the database), after `redis_up`."""
    gauge_sources(app).other.append(source)


def _decode(mapping: dict) -> dict[str, str]:
    return {key.decode(): value.decode() for key, value in mapping.items()}


def _http_sample(key: str, value: str) -> str:
    """One `http_requests_total` sample from its stored `method|status` key."""
    method, status = key.split("|", 1)
    return f"http_requests_total{metric_labels(method=method, status=status)} {value}"


def _stored_counters(connection: redis.Redis) -> list[str]:
    http = _decode(connection.hgetall(HTTP_KEY))
    operations = _decode(connection.hgetall(OPERATIONS_KEY))
    latency = _decode(connection.hgetall(LATENCY_KEY))
    lines = metric_family(
        "http_requests_total",
        "counter",
        "HTTP responses by method and status.",
        (_http_sample(key, value) for key, value in sorted(http.items())),
    )
    lines += metric_family(
        "credit_operations_total",
        "counter",
        "Credit operations (HTTP) by operation and outcome.",
        (
            f"credit_operations_total{metric_labels(operation=op, outcome=outcome)} {value}"
            for (op, outcome), value in sorted(
                (tuple(key.split("|")), value) for key, value in operations.items()
            )
        ),
    )
    samples = []
    for operation in sorted({key.split("|")[0] for key in latency}):
        cumulative = 0
        for bound in (*map(str, BUCKETS), "+Inf"):
            cumulative += int(latency.get(f"{operation}|{bound}", 0))
            samples.append(
                f"credit_operation_duration_seconds_bucket"
                f"{metric_labels(operation=operation, le=bound)} {cumulative}"
            )
        labels = metric_labels(operation=operation)
        samples.append(
            f"credit_operation_duration_seconds_sum{labels} "
            f"{float(latency.get(f'{operation}|sum', 0)):.6f}"
        )
        samples.append(f"credit_operation_duration_seconds_count{labels} {cumulative}")
    lines += metric_family(
        "credit_operation_duration_seconds",
        "histogram",
        "Duration of credit operations (HTTP request to response).",
        samples,
    )
    return lines


def render() -> str:
    """The metrics in the Prometheus text format (0.0.4); `redis_up 0` when Redis is down.

    This process's pending counts are flushed first; other processes' arrive within
    FLUSH_INTERVAL_SECONDS.
    """
    connection = ops_redis()
    pending().flush()
    sources = gauge_sources()
    try:
        lines = _stored_counters(connection)
        for read_redis in sources.redis:
            lines += read_redis(connection)
        up = 1
    except redis.RedisError as exc:
        log.warning("metrics: Redis is unreachable: %s", exc)
        lines, up = [], 0
    lines += metric_family(
        "redis_up", "gauge", "Whether Redis answered this scrape.", [f"redis_up {up}"]
    )
    for read in sources.other:
        lines += read()
    return "\n".join(lines) + "\n"
