import json
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest

from credit_app.generation.features import FEATURES
from credit_app.jobs.heartbeat import heartbeat
from credit_app.models import WebhookEvent
from credit_app.platform import health, metrics
from credit_app.platform.extensions import db
from credit_app.platform.logs import JsonFormatter, RequestIdFilter
from credit_app.platform.redis_client import get_redis, make_client
from credit_app.web import credit_metrics


@pytest.fixture(autouse=True)
def clean_redis_state():
    metrics.discard_pending()
    connection = get_redis()
    connection.delete(
        health.HEARTBEAT_KEY, metrics.HTTP_KEY, metrics.OPERATIONS_KEY, metrics.LATENCY_KEY
    )
    yield
    connection.delete(
        health.HEARTBEAT_KEY, metrics.HTTP_KEY, metrics.OPERATIONS_KEY, metrics.LATENCY_KEY
    )


@pytest.fixture
def broken_redis(app):
    """Redis gone for the health checks and metrics (their own fail-fast client)."""
    working = health.ops_redis()
    app.extensions["ops_redis"] = make_client("unix:///nonexistent/redis.sock", "monitoring")
    yield
    app.extensions["ops_redis"] = working


def test_healthz_is_ok_with_a_recent_worker_heartbeat(client):
    assert heartbeat() == health.worker_name()
    response = client.get("/healthz")
    body = response.get_json()
    assert response.status_code == 200
    assert body["status"] == "ok" and body["failing"] == []
    assert set(body["checks"]) == {"database", "redis", "worker"}
    assert response.headers["Cache-Control"] == "no-store"


def test_healthz_names_a_missing_or_stale_worker(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["failing"] == ["worker"]
    health.record_heartbeat(get_redis(), "old-worker:1", now=time.time() - 600)
    body = client.get("/healthz").get_json()
    assert body["failing"] == ["worker"] and "old-worker:1" in body["checks"]["worker"]["detail"]


def test_healthz_names_redis_when_it_is_down(client, broken_redis):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["failing"] == ["redis", "worker"]
    assert response.get_json()["checks"]["database"]["ok"] is True


def test_heartbeats_older_than_a_day_are_forgotten():
    connection = get_redis()
    health.record_heartbeat(connection, "ancient", now=time.time() - 200_000)
    health.record_heartbeat(connection, "fresh")
    assert [name.decode() for name in connection.zrange(health.HEARTBEAT_KEY, 0, -1)] == ["fresh"]


def test_metrics_count_requests_and_credit_operations(client, user_client, user):
    assert (
        user_client.post("/api/user/credits/consume", json={"feature": "interior"}).status_code
        == 200
    )
    for _ in range(6):
        user_client.post("/api/user/credits/consume", json={"feature": "interior"})
    user_client.get("/api/user/credits")
    client.get("/no-such-page")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'credit_operations_total{operation="consume",outcome="ok"} 6' in text
    assert 'credit_operations_total{operation="consume",outcome="insufficient_credits"} 1' in text
    assert 'credit_operations_total{operation="balance",outcome="ok"} 1' in text
    assert 'credit_operation_duration_seconds_count{operation="consume"} 7' in text
    assert 'credit_operation_duration_seconds_bucket{operation="consume",le="+Inf"} 7' in text
    assert 'http_requests_total{method="POST",status="402"} 1' in text
    assert 'http_requests_total{method="GET",status="404"} 1' in text
    for name in ("webhooks", "generations", "analytics", "default"):
        assert f'rq_queue_depth{{queue="{name}"}}' in text
    assert "# TYPE credit_operation_duration_seconds histogram" in text


def test_htmx_upgrade_modal_counts_as_insufficient_credits(user_client, user, client):
    for _ in range(6):
        user_client.post("/api/user/credits/consume", json={"feature": "interior"})
    response = user_client.post(
        "/dashboard/redecorate-room",
        headers={"HX-Request": "true"},
        data={"generation_id": "modal"},
    )
    assert response.headers["HX-Retarget"] == "#modal-root"
    text = client.get("/metrics").get_data(as_text=True)
    assert 'credit_operations_total{operation="reserve",outcome="insufficient_credits"} 1' in text


def test_metrics_report_the_webhook_lag(client):
    now = datetime.now(UTC)
    db.session.add_all(
        [
            WebhookEvent(
                event_id="evt_pending",
                event_type="x",
                payload={},
                event_created_at=now,
                received_at=now - timedelta(minutes=5),
            ),
            WebhookEvent(
                event_id="evt_done",
                event_type="x",
                payload={},
                event_created_at=now,
                received_at=now - timedelta(seconds=30),
                processed_at=now,
                attempts=1,
            ),
        ]
    )
    db.session.commit()
    samples = dict(
        line.rsplit(" ", 1)
        for line in client.get("/metrics").get_data(as_text=True).splitlines()
        if line and not line.startswith("#")
    )
    assert samples["webhook_events_pending"] == "1"
    assert 299 < float(samples["webhook_oldest_pending_age_seconds"]) < 400
    assert float(samples["webhook_processing_lag_seconds"]) == pytest.approx(30, abs=1)


def test_metrics_need_the_token_when_one_is_set(app, client):
    app.config["METRICS_TOKEN"] = "s3cret-token"
    try:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and ok.mimetype == "text/plain"
    finally:
        app.config["METRICS_TOKEN"] = ""


def test_metrics_are_off_in_production_without_a_token(app, client):
    app.config["APP_ENV"] = "production"
    try:
        assert client.get("/metrics").status_code == 404
    finally:
        app.config["APP_ENV"] = "testing"


def test_a_redis_outage_does_not_fail_requests_or_scrapes(client, broken_redis):
    started = time.monotonic()
    assert client.get("/login").status_code == 200
    text = client.get("/metrics").get_data(as_text=True)
    assert time.monotonic() - started < 2
    assert "redis_up 0" in text and "webhook_events_pending 0" in text


def test_every_response_carries_a_request_id(client):
    generated = client.get("/login").headers["X-Request-ID"]
    assert len(generated) == 32
    assert (
        client.get("/login", headers={"X-Request-ID": "lb-1234.abc"}).headers["X-Request-ID"]
        == "lb-1234.abc"
    )
    forged = client.get("/login", headers={"X-Request-ID": "<script>" + "x" * 100})
    assert len(forged.headers["X-Request-ID"]) == 32


def test_json_logs_carry_the_request_id(app):
    record = logging.LogRecord(
        "credit_app.test", logging.WARNING, __file__, 1, "spent %s credits", (3,), None
    )
    record.duration_ms = 4.5
    with app.test_request_context("/"):
        from flask import g

        g.request_id = "req-42"
        RequestIdFilter().filter(record)
        line = JsonFormatter().format(record)
    payload = json.loads(line)
    assert payload["message"] == "spent 3 credits"
    assert payload["request_id"] == "req-42"
    assert payload["level"] == "WARNING" and payload["duration_ms"] == 4.5


def test_credit_views_declare_their_operation(app):
    declared = {
        endpoint: credit_metrics.declared_operation(view)
        for endpoint, view in app.view_functions.items()
    }
    assert declared["credits.consume"] == "consume"
    assert declared["credits.get_credits"] == "balance"
    assert declared["credits.grant"] == "grant"
    assert declared["admin.adjust_credits"] == "adjust"
    assert all(declared[f"dashboard.start_{key}"] == "reserve" for key in FEATURES)
    assert declared["dashboard.home"] is None and declared["dashboard.upgrade_modal"] is None
    assert metrics.bucket_for(0.003) == "0.005" and metrics.bucket_for(99) == "+Inf"


def test_credit_requests_refused_before_their_view_count_too(app, user_client, client, monkeypatch):
    monkeypatch.setitem(app.config, "RATELIMIT_CONSUME", "1 per hour")
    for _ in range(2):
        user_client.post("/api/user/credits/consume", json={"feature": "interior"})
    assert user_client.options("/api/user/credits").status_code == 200
    text = client.get("/metrics").get_data(as_text=True)
    assert 'credit_operations_total{operation="consume",outcome="ok"} 1' in text
    assert 'credit_operations_total{operation="consume",outcome="rate_limited"} 1' in text
    assert 'operation="balance"' not in text


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_the_log_handler_tags_lines_with_the_request_id(app, log_format, capsys):
    from credit_app.platform.logs import build_handler

    handler = build_handler(log_format)
    logger = logging.getLogger(f"credit_app.test.{log_format}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with app.test_request_context("/"):
            from flask import g

            g.request_id = "req-7"
            logger.warning("hello")
    finally:
        logger.removeHandler(handler)
    line = capsys.readouterr().err.strip()
    if log_format == "json":
        assert json.loads(line)["request_id"] == "req-7"
    else:
        assert "[req-7]" in line and line.endswith("hello")


def test_request_counts_wait_in_memory_while_redis_is_down(app, user_client, client):
    user_client.get("/api/user/credits")
    working = metrics.pending()
    broken = metrics.PendingCounts(make_client("unix:///nonexistent/redis.sock", "monitoring"))
    broken.put_back(*working.take())
    broken.flush()
    working.put_back(*broken.take())
    text = client.get("/metrics").get_data(as_text=True)
    assert 'credit_operations_total{operation="balance",outcome="ok"} 1' in text


def test_gunicorn_log_lines_still_format_once_caller_lookups_are_skipped(monkeypatch):
    """gunicorn's error log prints the process id; the app's logging settings must keep it."""
    from gunicorn.glogging import CONFIG_DEFAULTS

    from credit_app.platform.logs import skip_caller_lookups

    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    skip_caller_lookups()
    record = logging.getLogger("gunicorn.error").makeRecord(
        "gunicorn.error", logging.INFO, __file__, 1, "Worker exiting (pid: %s)", (42,), None
    )
    line = logging.Formatter(CONFIG_DEFAULTS["formatters"]["generic"]["format"]).format(record)
    assert f"[{record.process}] [INFO] Worker exiting (pid: 42)" in line
