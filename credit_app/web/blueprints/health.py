"""Operations endpoints: GET /healthz for load balancers, GET /metrics for Prometheus."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState

from credit_app.jobs import gauges
from credit_app.platform import health, metrics
from credit_app.web import credit_metrics
from credit_app.web.responses import error_response

bp = Blueprint("health", __name__)


@bp.record_once
def init_metrics(state: BlueprintSetupState) -> None:
    """Count the app's requests and credit operations, and read the background work's gauges
    at each scrape."""
    credit_metrics.init_request_metrics(state.app)
    metrics.add_redis_gauges(state.app, gauges.queue_gauges)
    metrics.add_gauges(state.app, gauges.backlog_gauges)


@bp.get("/healthz")
def healthz() -> Response:
    """200 when the database, Redis and a worker's recent heartbeat are fine, else 503 naming
    the failing parts."""
    checks = health.check_all(current_app.config["WORKER_HEARTBEAT_MAX_AGE_SECONDS"])
    failing = [check.name for check in checks if not check.ok]
    response = jsonify(
        {
            "status": "fail" if failing else "ok",
            "failing": failing,
            "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in checks},
        }
    )
    response.status_code = 503 if failing else 200
    response.headers["Cache-Control"] = "no-store"
    return response


def _metrics_refusal() -> Response | None:
    """None when the caller may read /metrics; else the 401/404 to send.

    With METRICS_TOKEN set, a matching `Authorization: Bearer` is required; in production
    without one the endpoint does not exist.
    """
    token = current_app.config["METRICS_TOKEN"]
    if not token:
        if current_app.config["APP_ENV"] == "production":
            return error_response(404, "not_found", "Set METRICS_TOKEN to enable /metrics.")
        return None
    scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        supplied.strip().encode(), token.encode()
    ):
        response = error_response(401, "unauthorized", "Send the metrics token as a Bearer token.")
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return None


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    refusal = _metrics_refusal()
    if refusal is not None:
        return refusal
    return Response(
        metrics.render(),
        mimetype="text/plain; version=0.0.4; charset=utf-8",
        headers={"Cache-Control": "no-store"},
    )
