"""Admin reports of issue 15: fair use (today's heaviest users) and the reconciliation with
Creem (runs, what differed, what was fixed, what needs a person)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from credit_app.billing import reconciliation
from credit_app.jobs import enqueue_now
from credit_app.models import ReconciliationRun, User
from credit_app.platform.extensions import db
from credit_app.services import fair_use
from credit_app.web.auth import admin_required

bp = Blueprint("admin_reports", __name__, url_prefix="/admin")
FINDING_LABELS: dict[str, str] = {
    "status": "Status differs",
    "product": "Plan differs",
    "period_end": "Period end differs",
    "missing_here": "Missing on our side",
    "missing_at_creem": "Missing at Creem",
    "unknown_product": "Unknown product",
    "plan": "User's plan differs",
    "unreadable": "Creem could not be read",
}


@bp.before_request
@admin_required
def admin_only() -> None:
    """Every route here is for admins: anonymous callers sign in, others get 403."""


@bp.get("/fair-use")
def fair_use_report():
    return render_template(
        "admin/fair_use.html",
        usage=fair_use.daily_usage(limit=100),
        mark=fair_use.daily_mark(),
        day=fair_use.day_start(),
    )


@bp.get("/reconciliation")
def reconciliation_report():
    runs = reconciliation.latest_runs(20)
    run_id = request.args.get("run", "")
    if run_id:
        if not run_id.isdigit():
            abort(404)
        run = db.session.get(ReconciliationRun, int(run_id)) or abort(404)
    else:
        run = runs[0] if runs else None
    findings = reconciliation.findings_of(run.id) if run else []
    users = {
        user.id: user
        for user in db.session.query(User).filter(
            User.id.in_({finding.user_id for finding in findings if finding.user_id})
        )
    }
    return render_template(
        "admin/reconciliation.html",
        runs=runs,
        run=run,
        findings=findings,
        counts=reconciliation.finding_counts(r.id for r in runs),
        users=users,
        finding_labels=FINDING_LABELS,
    )


@bp.post("/reconciliation/run")
def run_reconciliation():
    """Queue a reconciliation now (the worker skips it if one is already going).
    Raises redis.RedisError (503) when the queue cannot be reached."""
    enqueue_now("reconcile_with_creem")
    flash(
        "A reconciliation with Creem was queued; its report appears here when it is done.",
        "success",
    )
    return redirect(url_for("admin_reports.reconciliation_report"), code=303)
