"""Prometheus metrics kept in Redis, so every gunicorn worker and host adds to the same numbers.

Counted per request, in memory: each process adds its counts up and sends them to Redis in
one pipeline at most every FLUSH_INTERVAL_SECONDS (and before it renders a scrape), so a
request pays no Redis round trip for its metrics and a Redis outage never fails a request
(the counts wait for the next flush):
- `http_requests_total{method,status}` — every response; the error rate is the share of 5xx;
- `credit_operations_total{operation,outcome}` and `credit_operation_duration_seconds` for
  the requests that check, spend or change credits (CREDIT_ENDPOINTS): the API's balance,
  consume and grant, starting a generation (a reservation), and admin adjustments.
Read at scrape time: rq queue depths and failed jobs, workers, the analytics backlog, and the
webhook processing lag (age of the oldest unprocessed event; mean lag over the last hour).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta

import redis
from flask import Flask, Response, current_app, g, request
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry
from sqlalchemy import func, select

from credit_app.jobs.registry import QUEUE_NAMES
from credit_app.models import AnalyticsEvent, WebhookEvent
from credit_app.platform.clock import utcnow
from credit_app.platform.extensions import db
from credit_app.platform.health import ops_redis

log = logging.getLogger(__name__)

PREFIX = "credit_app:metrics"
HTTP_KEY = f"{PREFIX}:http_requests"
OPERATIONS_KEY = f"{PREFIX}:credit_operations"
LATENCY_KEY = f"{PREFIX}:credit_latency"
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CREDIT_ENDPOINTS: dict[str, str] = {
    "credits.get_credits": "balance",
    "credits.consume": "consume",
    "credits.grant": "grant",
    "admin.adjust_credits": "adjust",
}
RESERVE_ENDPOINT_PREFIX = "dashboard.start_"
OUTCOMES_BY_STATUS = {402: "insufficient_credits", 409: "conflict", 429: "rate_limited",
                      401: "denied", 403: "denied"}


def credit_operation(endpoint: str | None, method: str) -> str | None:
    """The credit operation a request performs, or None for any other request."""
    if endpoint is None:
        return None
    if endpoint.startswith(RESERVE_ENDPOINT_PREFIX) and method == "POST":
        return "reserve"
    operation = CREDIT_ENDPOINTS.get(endpoint)
    if operation in ("adjust", "grant", "consume") and method != "POST":
        return None
    return operation


def outcome_of(response: Response) -> str:
    """ok, insufficient_credits (also the htmx upgrade modal), conflict, invalid, denied, error."""
    status = response.status_code
    if status < 400:
        if response.headers.get("HX-Retarget") == "#modal-root":
            return "insufficient_credits"
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

    def add(self, method: str, status: int, operation: str | None, outcome: str | None,
            seconds: float) -> None:
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
                log.warning("could not flush request metrics (kept until Redis answers): %s",
                            exc)
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


def record_request(method: str, status: int, operation: str | None, outcome: str | None,
                   seconds: float) -> None:
    """Add one request to this process's pending counts."""
    pending().add(method, status, operation, outcome, seconds)


def discard_pending() -> None:
    """Forget this process's unsent counts (tests start from zero)."""
    pending().take()


def init_request_metrics(app: Flask) -> None:
    """Time every request and count it when its response is ready."""

    @app.before_request
    def start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def count_request(response: Response) -> Response:
        started = g._get_current_object().__dict__.pop("metrics_started", None)
        current = request._get_current_object()
        endpoint, method = current.endpoint, current.method
        if started is None or endpoint == "static":
            return response
        operation = credit_operation(endpoint, method)
        pending(app).add(method, response.status_code, operation,
                         outcome_of(response) if operation else None,
                         time.perf_counter() - started)
        return response


def _labels(**labels: object) -> str:
    def escape(value: object) -> str:
        return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{name}="{escape(value)}"' for name, value in labels.items()) + "}"


def _family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


def _decode(mapping: dict) -> dict[str, str]:
    return {key.decode(): value.decode() for key, value in mapping.items()}


def _stored_counters(connection: redis.Redis) -> list[str]:
    http = _decode(connection.hgetall(HTTP_KEY))
    operations = _decode(connection.hgetall(OPERATIONS_KEY))
    latency = _decode(connection.hgetall(LATENCY_KEY))
    lines = _family("http_requests_total", "counter", "HTTP responses by method and status.", (
        f"http_requests_total{_labels(method=key.split('|')[0], status=key.split('|')[1])} "
        f"{value}" for key, value in sorted(http.items())))
    lines += _family("credit_operations_total", "counter",
                     "Credit operations (HTTP) by operation and outcome.", (
                         f"credit_operations_total{_labels(operation=op, outcome=outcome)} {value}"
                         for (op, outcome), value in sorted(
                             (tuple(key.split("|")), value) for key, value in operations.items())))
    samples = []
    for operation in sorted({key.split("|")[0] for key in latency}):
        cumulative = 0
        for bound in (*map(str, BUCKETS), "+Inf"):
            cumulative += int(latency.get(f"{operation}|{bound}", 0))
            samples.append(f"credit_operation_duration_seconds_bucket"
                           f"{_labels(operation=operation, le=bound)} {cumulative}")
        samples.append(f"credit_operation_duration_seconds_sum{_labels(operation=operation)} "
                       f"{float(latency.get(f'{operation}|sum', 0)):.6f}")
        samples.append(f"credit_operation_duration_seconds_count{_labels(operation=operation)} "
                       f"{cumulative}")
    lines += _family("credit_operation_duration_seconds", "histogram",
                     "Duration of credit operations (HTTP request to response).", samples)
    return lines


def _queue_gauges(connection: redis.Redis) -> list[str]:
    depth, failed, started = [], [], []
    for name in QUEUE_NAMES:
        queue = Queue(name, connection=connection)
        depth.append(f"rq_queue_depth{_labels(queue=name)} {queue.count}")
        failed.append(f"rq_failed_jobs{_labels(queue=name)} "
                      f"{FailedJobRegistry(queue=queue).count}")
        started.append(f"rq_started_jobs{_labels(queue=name)} "
                       f"{StartedJobRegistry(queue=queue).count}")
    return [
        *_family("rq_queue_depth", "gauge", "Jobs waiting in each rq queue.", depth),
        *_family("rq_failed_jobs", "gauge", "Jobs in each queue's failed registry.", failed),
        *_family("rq_started_jobs", "gauge", "Jobs running from each queue.", started),
        *_family("rq_workers", "gauge", "rq workers registered.",
                 [f"rq_workers {Worker.count(connection=connection)}"]),
    ]


def _database_gauges() -> list[str]:
    now = utcnow()
    oldest = db.session.execute(
        select(func.min(WebhookEvent.received_at)).where(WebhookEvent.processed_at.is_(None))
    ).scalar_one()
    pending = db.session.execute(
        select(func.count()).select_from(WebhookEvent).where(WebhookEvent.processed_at.is_(None))
    ).scalar_one()
    mean_lag = db.session.execute(
        select(func.avg(func.extract("epoch", WebhookEvent.processed_at
                                     - WebhookEvent.received_at)))
        .where(WebhookEvent.processed_at >= now - timedelta(hours=1))
    ).scalar_one()
    backlog = db.session.execute(
        select(func.count()).select_from(AnalyticsEvent)
        .where(AnalyticsEvent.rolled_up_at.is_(None))
    ).scalar_one()
    oldest_age = (now - oldest).total_seconds() if oldest is not None else 0.0
    return [
        *_family("webhook_events_pending", "gauge", "Webhook events not processed yet.",
                 [f"webhook_events_pending {pending}"]),
        *_family("webhook_oldest_pending_age_seconds", "gauge",
                 "Age of the oldest unprocessed webhook event (0 when none).",
                 [f"webhook_oldest_pending_age_seconds {oldest_age:.3f}"]),
        *_family("webhook_processing_lag_seconds", "gauge",
                 "Mean time from receipt to processing of webhook events in the last hour.",
                 [f"webhook_processing_lag_seconds {float(mean_lag or 0):.3f}"]),
        *_family("analytics_events_pending", "gauge", "Analytics events not rolled up yet.",
                 [f"analytics_events_pending {backlog}"]),
    ]


def render() -> str:
    """The metrics in the Prometheus text format (0.0.4); `redis_up 0` when Redis is down.

    This process's pending counts are flushed first; other processes' arrive within
    FLUSH_INTERVAL_SECONDS.
    """
    connection = ops_redis()
    pending().flush()
    try:
        lines = _stored_counters(connection) + _queue_gauges(connection)
        up = 1
    except redis.RedisError as exc:
        log.warning("metrics: Redis is unreachable: %s", exc)
        lines, up = [], 0
    lines += _family("redis_up", "gauge", "Whether Redis answered this scrape.",
                     [f"redis_up {up}"])
    return "\n".join(lines + _database_gauges()) + "\n"
