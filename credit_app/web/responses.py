"""The one place that turns any error into an answer: JSON for the API, the webhooks and
clients that prefer it, an htmx fragment for htmx, a page for a browser, and 503 with
Retry-After for an outage of the database or Redis."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Flask, Response, current_app, jsonify, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from credit_app.errors import DomainError, InsufficientCredits, RateLimited, ServiceUnavailable
from credit_app.platform.extensions import db
from credit_app.platform.outages import OUTAGE_ERRORS, retry_after_seconds
from credit_app.services.limits import MAX_UPLOAD_MEGABYTES
from credit_app.web import htmx
from credit_app.web.blueprints.billing import WEBHOOK_PATH_PREFIX

log = logging.getLogger(__name__)

API_PATH_PREFIX = "/api/"
# A full traceback once per incident (per kind of outage and this long), one line otherwise.
OUTAGE_TRACEBACK_INTERVAL_SECONDS = 60.0
UPLOAD_TOO_LARGE_MESSAGE = (
    "That file is too large to upload: photos can be up to "
    f"{MAX_UPLOAD_MEGABYTES} MB. Choose a smaller one."
)


def wants_json_response() -> bool:
    """API and webhook paths and clients that prefer JSON get JSON; browsers and htmx HTML."""
    if request.path.startswith((API_PATH_PREFIX, WEBHOOK_PATH_PREFIX)):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and (
        request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def error_body(code: str, message: str, **details: Any) -> dict:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error.update(details)
    return {"error": error}


def error_response(status: int, code: str, message: str, **details: Any) -> Response:
    """Render an error for whoever asked: JSON, an htmx fragment, or a full page.

    A server-side error (5xx) gets the standalone page, which reads neither the signed-in user
    nor their credits, so it renders while the database is down.
    """
    if wants_json_response():
        response = jsonify(error_body(code, message, **details))
    elif htmx.is_htmx_request():
        response = htmx.retarget(
            Response(
                render_template("errors/_error.html", status=status, code=code, message=message)
            ),
            "#flash-area",
            "innerHTML",
        )
    elif status >= 500:
        response = Response(_standalone_page(status, message))
    else:
        response = Response(
            render_template("errors/error.html", status=status, code=code, message=message)
        )
    response.status_code = status
    htmx.vary_on_htmx(response)
    response.vary.add("Accept")
    return response


def upload_too_large_response() -> Response:
    """A generation form's upload was over the request limit: the message goes under the
    photo field (#image-error), not to the top of the page; nothing was read or spent."""
    response = Response(
        render_template(
            "errors/_field_error.html", field="image", message=UPLOAD_TOO_LARGE_MESSAGE
        ),
        status=413,
    )
    htmx.retarget(response, "#image-error", "outerHTML")
    htmx.vary_on_htmx(response)
    response.vary.add("Accept")
    return response


def _standalone_page(status: int, message: str) -> str:
    """The 5xx page, rendered without context processors: they would load the signed-in user
    (flask-login's `current_user`), which needs the database that may be what failed."""
    template = current_app.jinja_env.get_template("errors/unavailable.html")
    return template.render(status=status, message=message, url_for=url_for, request=request)


class _IncidentLog:
    """Logs an outage's traceback once per incident and a single line for each request after
    it, so a minute of downtime costs a few lines of log, not a traceback per request."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def report(self, exc: Exception) -> None:
        kind = type(exc).__name__
        now = time.monotonic()
        with self._lock:
            first = now - self._last.get(kind, float("-inf")) >= self.interval
            if first:
                self._last[kind] = now
        if first:
            log.error(
                "outage on %s %s (%s); answering 503 (traceback once per %.0f s)",
                request.method,
                request.path,
                kind,
                self.interval,
                exc_info=exc,
            )
        else:
            log.warning(
                "outage on %s %s: %s: %s",
                request.method,
                request.path,
                kind,
                str(exc).splitlines()[0] if str(exc) else "",
            )


outage_log = _IncidentLog(OUTAGE_TRACEBACK_INTERVAL_SECONDS)


def _rollback_quietly() -> None:
    """Roll the session back; on a connection that is already gone that can fail too."""
    try:
        db.session.rollback()
    except Exception:
        db.session.close()


def unavailable_response(exc: Exception) -> Response:
    """503 with Retry-After for an outage error (OUTAGE_ERRORS or ServiceUnavailable)."""
    message = (
        exc.message if isinstance(exc, ServiceUnavailable) else (ServiceUnavailable.default_message)
    )
    response = error_response(503, ServiceUnavailable.code, message)
    response.headers["Retry-After"] = str(retry_after_seconds(exc))
    return response


def _http_code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_")


def _retry_after_of_rate_limit(exc: HTTPException) -> int:
    """Seconds until a breached limit lets the caller in again: the limiter's own header when
    it wrote one, else the length of the limit's window (the longest the wait can be)."""
    original = exc.get_response().headers.get("Retry-After")
    if original and original.isdigit():
        return max(1, int(original))
    limit = getattr(getattr(exc, "limit", None), "limit", None)
    return max(1, int(limit.get_expiry())) if limit is not None else 60


def domain_error_response(exc: DomainError) -> Response:
    """The answer to a DomainError a view raised: its status, code and message (503 with
    Retry-After for ServiceUnavailable); the request's transaction is rolled back."""
    _rollback_quietly()
    if isinstance(exc, ServiceUnavailable):
        return unavailable_response(exc)
    details = dict(exc.details)
    if isinstance(exc, InsufficientCredits):
        details["upgrade_url"] = url_for(
            "billing.subscription", feature=details.pop("feature", None)
        )
    response = error_response(exc.status, exc.code, exc.message, **details)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def http_error_response(exc: HTTPException) -> Response:
    """The answer to an HTTP error (404, 405, 413, 429, ...), with Allow or Retry-After where
    they apply; a 5xx rolls the request's transaction back."""
    if exc.code and exc.code >= 500:
        _rollback_quietly()
    message = exc.description or exc.name
    if exc.code == 413 and not wants_json_response():
        message = UPLOAD_TOO_LARGE_MESSAGE
    response = error_response(exc.code or 500, _http_code(exc), message)
    if exc.code == 429:
        response.headers["Retry-After"] = str(_retry_after_of_rate_limit(exc))
    if exc.code == 405 and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def unexpected_error_response(exc: Exception) -> Response:
    """503 for an outage (its traceback logged once per incident), else 500 with the
    traceback logged; the request's transaction is rolled back."""
    _rollback_quietly()
    if isinstance(exc, OUTAGE_ERRORS):
        outage_log.report(exc)
        return unavailable_response(exc)
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(
        500, "internal_error", "Something went wrong on our side. Please try again."
    )


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(DomainError, domain_error_response)
    app.register_error_handler(HTTPException, http_error_response)
    app.register_error_handler(Exception, unexpected_error_response)
