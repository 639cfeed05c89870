"""The credit counter over a websocket: first the current state, then every change, pushed."""

from __future__ import annotations

import logging
import queue
from urllib.parse import urlsplit

from flask import Blueprint, current_app, render_template, request
from flask_login import current_user

from credit_app.errors import Forbidden, Unauthorized
from credit_app.platform.extensions import db, sock
from credit_app.platform.outages import OUTAGE_ERRORS
from credit_app.platform.redis_client import client_for
from credit_app.services import credits
from credit_app.services.credits import UserCredits, utcnow
from credit_app.web.live_hub import HUB_DOWN, RESYNC, CreditHub

log = logging.getLogger(__name__)
bp = Blueprint("live", __name__)
WAIT_SECONDS = 5
TRY_AGAIN_LATER = 1013


@bp.before_request
def only_signed_in_same_origin() -> None:
    """Refuse the handshake (before any upgrade) for anonymous or cross-site callers.

    Raises Unauthorized, Forbidden.
    """
    if not current_user.is_authenticated:
        raise Unauthorized("Sign in to receive live credit updates.")
    origin = urlsplit(request.headers.get("Origin", ""))
    if not origin.hostname or origin.hostname != urlsplit(f"//{request.host}").hostname:
        raise Forbidden("Live updates only accept connections from this site.")


def hub() -> CreditHub:
    if "credit_hub" not in current_app.extensions:
        current_app.extensions["credit_hub"] = CreditHub(
            client_for(current_app._get_current_object(), "hub")
        )
    return current_app.extensions["credit_hub"]


def render_counter(status: UserCredits) -> str:
    return render_template("dashboard/_sidebar_credits.html", credits=status, oob=True)


def status_from_message(message: dict) -> UserCredits:
    return UserCredits(
        int(message["user_id"]),
        message["remaining_credits"],
        message["total"],
        message["subscription_status"],
        utcnow(),
    )


@sock.route("/ws/credits", bp=bp)
def credit_socket(ws) -> None:
    """Send the counter now and on every change of this user's credits, until they leave.

    While the hub has no Redis subscription the socket sends the current state and closes
    (1013, try again later): the page polls until a reconnect finds the hub live again. When
    the hub comes back it asks every socket to resend the current state (RESYNC).
    """
    user_id = current_user.id
    live_hub = hub()
    inbox = live_hub.subscribe(user_id)
    try:
        try:
            shown = _send_current(ws, user_id)
        except OUTAGE_ERRORS as exc:
            # Without its first state the page would wait on a silent socket: close it, so
            # the page polls and reconnects later.
            log.warning(
                "live socket of user %s closed at start: %s: %s", user_id, type(exc).__name__, exc
            )
            ws.close(reason=TRY_AGAIN_LATER, message="live updates are paused")
            return
        if not live_hub.is_live:
            ws.close(reason=TRY_AGAIN_LATER, message="live updates are paused")
            return
        while ws.connected:
            try:
                message = inbox.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                continue
            if message is HUB_DOWN:
                ws.close(reason=TRY_AGAIN_LATER, message="live updates are paused")
                return
            try:
                shown = _push(ws, user_id, message, shown)
            except OUTAGE_ERRORS as exc:
                log.warning(
                    "live socket of user %s closed: %s: %s", user_id, type(exc).__name__, exc
                )
                ws.close(reason=TRY_AGAIN_LATER, message="live updates are paused")
                return
    finally:
        live_hub.unsubscribe(user_id, inbox)


def _push(ws, user_id: int, message: dict, shown: int) -> int:
    """Send what `message` changed (or the whole state on RESYNC); returns the newest ledger
    id shown. The counter's texts may read the database (what expires when): the connection
    goes back to the pool after each push, or every open socket would keep one."""
    if message is RESYNC:
        return _send_current(ws, user_id)
    if message.get("ledger_id", 0) <= shown:
        return shown
    try:
        ws.send(render_counter(status_from_message(message)))
    finally:
        db.session.remove()
    return message["ledger_id"]


def _send_current(ws, user_id: int) -> int:
    """Send the counter as the database has it; returns the newest ledger id it shows."""
    try:
        shown = credits.latest_entry_id(user_id)
        ws.send(render_counter(credits.get_user_credits(user_id)))
    finally:
        db.session.remove()
    return shown
