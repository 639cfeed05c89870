"""What every template can use: the signed-in user's credits, and the response Vary header."""

from __future__ import annotations

from datetime import datetime

from flask import Flask, Response, g
from flask_login import current_user

from credit_app.generation.features import FEATURES
from credit_app.generation.options import describe_options
from credit_app.models import CreditTransaction, LedgerKind
from credit_app.services import credits
from credit_app.web import htmx

SOURCE_NAMES = {
    "registration": "Welcome credits",
    "admin_grant": "Credits from our team",
    "refund": "Refund",
    "subscription": "Plan change",
    "adjustment": "Correction",
    "pack": "Credit pack",
    "pack_refund": "Credit pack refunded",
    "refill": "Monthly free credits",
    "expiry": "Credits expired",
}


def ledger_label(entry: CreditTransaction) -> str:
    """What a ledger row means to the person whose credits it moved."""
    feature = FEATURES.get(entry.feature_used)
    title = feature.title if feature else SOURCE_NAMES.get(entry.feature_used, entry.feature_used)
    metadata = entry.metadata_ or {}
    if entry.kind == LedgerKind.RESERVE:
        return f"{title}: started, credit held"
    if entry.kind == LedgerKind.CONSUME:
        return f"{title}: finished" if entry.reservation_id else title
    if entry.kind == LedgerKind.RELEASE:
        why = "timed out" if metadata.get("reason") == "timeout" else "did not finish"
        return f"{title}: {why}, credit returned"
    if entry.feature_used == "registration" and entry.amount == 0 and metadata.get("reason"):
        return metadata["reason"]
    if entry.kind == LedgerKind.GRANT and metadata.get("expires_at"):
        expires_at = datetime.fromisoformat(metadata["expires_at"])
        return f"{title} (expire on {expires_at:%d %b %Y})"
    if entry.kind == LedgerKind.ADJUST and entry.feature_used == "subscription":
        return f"Plan changed to {'Pro' if metadata.get('to') == 'pro' else 'Free'}"
    return title


def init_templating(app: Flask) -> None:
    app.add_template_filter(ledger_label)

    @app.context_processor
    def inject_credits() -> dict:
        def sidebar_credits() -> credits.UserCredits | None:
            """The signed-in user's credits, read once per request: every credit text on a
            page (sidebar, top bar, headings, cost notes) shows the same state."""
            if not current_user.is_authenticated:
                return None
            if "sidebar_credits" not in g:
                g.sidebar_credits = credits.get_user_credits(current_user.id)
            return g.sidebar_credits

        def expiring_credits() -> list:
            """The signed-in user's lots that will lapse, read once per request like the
            balance (the sidebar and the page's body both show them)."""
            if not current_user.is_authenticated:
                return []
            if "expiring_credits" not in g:
                g.expiring_credits = credits.expiring_lots(current_user.id)
            return g.expiring_credits

        return {
            "sidebar_credits": sidebar_credits,
            "expiring_credits": expiring_credits,
            "all_features": FEATURES.values(),
            "all_features_by_key": FEATURES,
            "describe_options": describe_options,
        }

    @app.after_request
    def vary_on_htmx(response: Response) -> Response:
        """An answer to a request htmx made varies on it (only varies: the security headers
        are credit_app/web/security_headers.py's)."""
        return htmx.vary_on_htmx(response) if htmx.sent_htmx_header() else response
