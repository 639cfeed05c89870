"""Logging: one JSON object per line (or readable text in development), each with a request id.

The request id is the caller's `X-Request-ID` when it is a sane token (so a proxy's id flows
through), else a new one; it is echoed in the response header. Inside an rq job, the job id
stands in for it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from datetime import UTC, datetime

from flask import Flask, Response, g, has_request_context, request

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}
access_log = logging.getLogger("credit_app.requests")


def current_request_id() -> str | None:
    """The id of the request or rq job being handled, if any."""
    if has_request_context():
        return g.get("request_id")
    from rq import get_current_job

    job = get_current_job()
    return job.id if job is not None else None


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record that does not carry one already (the request log
    line passes its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """A JSON object per record: time, level, logger, message, request_id, and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or current_request_id(),
        }
        payload.update(
            {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES}
        )
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def build_handler(log_format: str) -> logging.Handler:
    """A stderr handler in `json` or `text` format, tagging records with the request id."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
        )
    return handler


def skip_caller_lookups() -> None:
    """Stop the logging module from finding, for every record, the file, line and function
    that logged it, and the thread names, which no format here prints: the "Optimization"
    settings of the logging documentation. A request's log line cost about a third less with
    them. The process id stays: gunicorn's own log lines print `%(process)d`, and without it
    each of them (the worker's start-up report, "Worker exiting") fails to format and is
    lost."""
    logging._srcfile = None  # the documented switch for caller look-ups
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging.logAsyncioTasks = False


def init_request_ids(app: Flask) -> None:
    """Give every request an id, echo it in the response, and log one line per request."""

    @app.before_request
    def assign_request_id() -> None:
        supplied = request.environ.get(_REQUEST_ID_ENVIRON, "")
        context = g._get_current_object()
        context.request_id = (
            supplied if supplied and _VALID_REQUEST_ID.match(supplied) else os.urandom(16).hex()
        )
        context.request_started = time.perf_counter()

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        context = g._get_current_object()
        request_id = getattr(context, "request_id", None)
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        started = getattr(context, "request_started", None)
        if started is None or not access_log.isEnabledFor(logging.INFO):
            return response
        current = request._get_current_object()
        if current.endpoint != "static":
            method, path, status = current.method, current.path, response.status_code
            access_log.info(
                "%s %s %s",
                method,
                path,
                status,
                extra={
                    "request_id": request_id or "-",
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
        return response
