"""Downloads: a signed-in user's own data (JSON, or one CSV per table), and the admins' CSVs
of every user and every ledger row. All are streamed (services/exports.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, stream_with_context
from flask_login import current_user, login_required

from credit_app.platform.clock import utcnow
from credit_app.services import exports
from credit_app.web.auth import admin_required

log = logging.getLogger(__name__)
bp = Blueprint("exports", __name__)


def _download(chunks: Iterator[str], filename: str, mimetype: str) -> Response:
    response = Response(stream_with_context(chunks), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _batch() -> int:
    return int(current_app.config["EXPORT_BATCH_ROWS"])


def _stamp() -> str:
    return utcnow().strftime("%Y%m%d")


@bp.get("/settings/account/export.json")
@login_required
def my_data_json():
    """The user's account, ledger, generations and subscriptions in one JSON file."""
    return _download(
        exports.user_json(current_user.id, _batch()),
        f"roomcraft-data-{_stamp()}.json",
        "application/json",
    )


@bp.get("/settings/account/export/<name>.csv")
@login_required
def my_data_csv(name: str):
    """One of the user's tables (ledger, generations, subscription) as CSV. 404 for another
    name."""
    chunks = exports.dataset_csv(name, current_user.id, _batch())
    return _download(chunks, f"roomcraft-{name}-{_stamp()}.csv", "text/csv")


@bp.get("/admin/exports/<name>.csv")
@admin_required
def admin_csv(name: str):
    """Every user, or every ledger row, as CSV (admins only). 404 for another name."""
    chunks = exports.admin_csv(name, _batch())
    log.info("admin %s exported all %s", current_user.id, name)
    return _download(chunks, f"roomcraft-all-{name}-{_stamp()}.csv", "text/csv")
