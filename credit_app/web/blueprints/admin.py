"""The admin area (admins only, 403 for everyone else): analytics, users and their credits, the
audit log, webhook events, failed jobs and queues, and the enforcement rollout."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from credit_app.billing import plans as billing_plans
from credit_app.billing import subscriptions as billing_subscriptions
from credit_app.errors import DomainError, ValidationFailed
from credit_app.models import AUDIT_ACTIONS, User
from credit_app.platform.extensions import db
from credit_app.platform.input_text import clean_line
from credit_app.platform.redis_client import get_redis
from credit_app.services import (
    admin,
    admin_analytics,
    audit,
    credits,
    fair_use,
    generations,
    rollout,
)
from credit_app.services.limits import MAX_ID
from credit_app.web import charts
from credit_app.web.auth import admin_required
from credit_app.web.credit_metrics import credit_operation
from credit_app.web.forms import AdjustCreditsForm, RolloutForm, SignInAccessForm

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.context_processor
def inject_person_names() -> dict:
    """`person(user_id)`: the email admins recognise instead of "#5" (read once per id)."""
    known: dict[int, str] = {}

    def person(user_id: int | None) -> str:
        if user_id is None:
            return "system"
        if user_id not in known:
            user = db.session.get(User, user_id)
            known[user_id] = user.email if user is not None else f"deleted user {user_id}"
        return known[user_id]

    return {"person": person}


QUICK_RANGES = (7, 30, 90)


@bp.before_request
@admin_required
def admin_only() -> None:
    """Every route here is for admins: anonymous callers sign in, others get 403."""


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= MAX_ID:
        raise ValidationFailed(f"{name} must be a whole number from 1 to {MAX_ID}.", field=name)
    return int(value)


@bp.app_template_filter("admin_duration")
def admin_duration(seconds: float | None) -> str:
    """A duration for people: 2 d 5 h, 3 h 12 min, 4 min, 20 s; an em dash for none."""
    if seconds is None:
        return "—"
    seconds = round(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


@bp.app_template_filter("admin_percent")
def admin_percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


# Users


@bp.get("/")
def users():
    search = clean_line(request.args.get("q", ""))
    query = select(User).order_by(User.id.desc()).limit(50)
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(func.lower(User.email).like(f"%{escaped}%", escape="\\"))
    return render_template(
        "admin/users.html", users=db.session.execute(query).scalars().all(), search=search
    )


def _render_user(
    user: User,
    form: AdjustCreditsForm,
    status: int = 200,
    access_form: SignInAccessForm | None = None,
):
    history = credits.get_credit_history(user.id, request.args.get("cursor"), limit=50)
    return render_template(
        "admin/user_detail.html",
        user=user,
        form=form,
        history=history,
        generations=generations.list_generations(user.id, limit=20),
        audit_entries=audit.list_entries(target_user_id=user.id, limit=20).items,
        subscriptions=billing_subscriptions.user_subscriptions(user.id),
        plan_for_product=billing_plans.plan_for_product,
        access_form=access_form or SignInAccessForm(formdata=None, prefix="access"),
        fair_use=fair_use.fair_use_of(user.id),
        usage_history=fair_use.usage_history(user.id),
    ), status


@bp.get("/users/<int:user_id>")
def user_detail(user_id: int):
    user = db.session.get(User, user_id) or abort(404)
    return _render_user(user, AdjustCreditsForm(formdata=None))


@bp.post("/users/<int:user_id>/credits")
@credit_operation("adjust")
def adjust_credits(user_id: int):
    """Grant (the credit API's own service call) or remove credits, with a required reason."""
    user = db.session.get(User, user_id) or abort(404)
    form = AdjustCreditsForm()
    if not form.validate_on_submit():
        return _render_user(user, form, 422)
    amount, reason = form.amount.data, form.reason.data
    try:
        if form.operation.data == "remove":
            credits.remove_credits(user.id, amount, reason, actor_id=current_user.id)
        else:
            credits.grant_credits(user.id, amount, reason, actor_id=current_user.id)
    except DomainError as exc:
        db.session.rollback()
        field = getattr(form, exc.details.get("field", ""), None) or form.amount
        field.errors = [*field.errors, exc.message]
        return _render_user(db.session.get(User, user_id), form, exc.status)
    db.session.commit()
    verb = "Removed" if form.operation.data == "remove" else "Granted"
    flash(
        f"{verb} {amount} credits {'from' if verb == 'Removed' else 'to'} {user.email}.", "success"
    )
    return redirect(url_for("admin.user_detail", user_id=user.id))


@bp.post("/users/<int:user_id>/sign-in")
def set_sign_in_access(user_id: int):
    """Disable sign-in (ending every session of the account) or enable it, with a reason."""
    user = db.session.get(User, user_id) or abort(404)
    form = SignInAccessForm(prefix="access")
    disable = request.form.get("action") == "disable"
    if not form.validate_on_submit():
        return _render_user(user, AdjustCreditsForm(formdata=None), 422, access_form=form)
    try:
        admin.set_sign_in_disabled(user.id, disable, form.reason.data, current_user.id)
    except DomainError as exc:
        db.session.rollback()
        form.reason.errors = [*form.reason.errors, exc.message]
        return _render_user(
            db.session.get(User, user_id),
            AdjustCreditsForm(formdata=None),
            exc.status,
            access_form=form,
        )
    db.session.commit()
    flash(
        f"{'Disabled' if disable else 'Enabled'} sign-in for {user.email}"
        f"{'; every session of the account has ended' if disable else ''}.",
        "success",
    )
    return redirect(url_for("admin.user_detail", user_id=user.id))


# Analytics


def _range_or_error() -> tuple[admin_analytics.DateRange | None, ValidationFailed | None]:
    try:
        return admin_analytics.parse_range(request.args.get("start"), request.args.get("end")), None
    except ValidationFailed as exc:
        return None, exc


def _charts(dashboard: admin_analytics.Dashboard) -> dict[str, charts.Chart]:
    labels = [day.day.strftime("%b %d") for day in dashboard.days]
    return {
        "generations": charts.column_chart(
            "chart-generations",
            "Generations per day",
            "Stacked columns: successful uses and failed generations per UTC day.",
            labels,
            [
                charts.Series("succeeded", [day.uses for day in dashboard.days]),
                charts.Series("failed", [day.failed for day in dashboard.days], "danger"),
            ],
        ),
        "failure_rate": charts.line_chart(
            "chart-failure-rate",
            "Failure rate per day",
            "Share of generations that failed, per UTC day.",
            labels,
            [charts.Series("failure rate", [day.failure_rate for day in dashboard.days], "danger")],
            percent=True,
        ),
        "features": charts.bar_chart(
            "chart-features",
            "Uses per feature",
            "Horizontal bars: uses of each feature in the range.",
            [(row.title, row.uses) for row in dashboard.features],
        ),
        "active": charts.column_chart(
            "chart-active",
            "Active users per day",
            "Stacked columns: distinct free and Pro users with a use, per UTC day.",
            labels,
            [
                charts.Series("free", [day.active_free for day in dashboard.days]),
                charts.Series("Pro", [day.active_pro for day in dashboard.days]),
            ],
        ),
        "modal": charts.line_chart(
            "chart-modal",
            "Upgrade modal per day",
            "Lines: upgrade modals shown, dismissed, and upgrade clicks per UTC day.",
            labels,
            [
                charts.Series("shown", [day.modal_shown for day in dashboard.days]),
                charts.Series("dismissed", [day.modal_dismissed for day in dashboard.days]),
                charts.Series("upgrade clicked", [day.upgrade_clicked for day in dashboard.days]),
            ],
        ),
        "funnel": charts.bar_chart(
            "chart-funnel",
            "Upgrade funnel",
            "Horizontal bars: users shown the modal, of them who clicked upgrade, and paid.",
            [
                ("Shown the modal", dashboard.funnel_modal_users),
                ("Clicked upgrade", dashboard.funnel_clicked_users),
                ("Paid", dashboard.funnel_paid_users),
            ],
        ),
    }


def _analytics_context(date_range: admin_analytics.DateRange) -> dict:
    dashboard = admin_analytics.build_dashboard(date_range)
    return {"dashboard": dashboard, "charts": _charts(dashboard), "range": date_range}


@bp.get("/analytics")
def analytics():
    date_range, error = _range_or_error()
    today = datetime.now(UTC).date()
    quick = [(days, today - timedelta(days=days - 1), today) for days in QUICK_RANGES]
    if error is not None:
        return render_template(
            "admin/analytics.html",
            error=error,
            quick=quick,
            start=request.args.get("start", ""),
            end=request.args.get("end", ""),
        ), error.status
    return render_template(
        "admin/analytics.html",
        error=None,
        quick=quick,
        start=date_range.start.isoformat(),
        end=date_range.end.isoformat(),
        **_analytics_context(date_range),
    )


@bp.get("/analytics/panel")
def analytics_panel():
    """The dashboard's numbers alone, which the page polls with htmx."""
    date_range, error = _range_or_error()
    if error is not None:
        raise error
    return render_template("admin/_analytics_panel.html", **_analytics_context(date_range))


# Audit log


@bp.get("/audit")
def audit_log():
    action = request.args.get("action") or None
    page = audit.list_entries(
        action=action, target_user_id=_int_arg("user"), before=_int_arg("before")
    )
    users_by_id = _users_by_id(
        {entry.actor_id for entry in page.items} | {entry.target_user_id for entry in page.items}
    )
    return render_template(
        "admin/audit.html", page=page, action=action, actions=AUDIT_ACTIONS, users_by_id=users_by_id
    )


def _users_by_id(ids: set[int | None]) -> dict[int, User]:
    wanted = {user_id for user_id in ids if user_id is not None}
    if not wanted:
        return {}
    return {
        user.id: user
        for user in db.session.execute(select(User).where(User.id.in_(wanted))).scalars()
    }


# Webhook events


@bp.get("/webhooks")
def webhook_events():
    status = request.args.get("status", "all")
    page = admin.list_webhook_events(status, before=_int_arg("before"))
    return render_template(
        "admin/webhooks.html",
        page=page,
        status=status,
        filters=admin.WEBHOOK_FILTERS,
        status_of=admin.webhook_status,
    )


@bp.get("/webhooks/<int:pk>")
def webhook_event(pk: int):
    event = admin.get_webhook_event(pk)
    return render_template(
        "admin/webhook_detail.html",
        event=event,
        status=admin.webhook_status(event),
        payload=json.dumps(event.payload, indent=2, sort_keys=True),
    )


@bp.post("/webhooks/<int:pk>/rerun")
def rerun_webhook_event(pk: int):
    event = admin.get_webhook_event(pk)
    admin.rerun_webhook_event(event.event_id, actor_id=current_user.id)
    db.session.commit()
    flash(f"Queued {event.event_id} to run again.", "success")
    return redirect(url_for("admin.webhook_event", pk=pk))


# Jobs and queues


@bp.get("/jobs")
def jobs():
    connection = get_redis()
    return render_template(
        "admin/jobs.html",
        queues=admin.queue_states(connection),
        failed_jobs=admin.failed_jobs(connection, "generations"),
        failed_generations=admin.failed_generations(),
    )


# Enforcement rollout


def _render_rollout(form: RolloutForm, status: int = 200):
    return render_template(
        "admin/rollout.html",
        form=form,
        percentage=rollout.percentage(),
        steps=rollout.ROLLOUT_STEPS,
        history=audit.list_entries(action="rollout.change", limit=20).items,
    ), status


@bp.get("/rollout")
def rollout_page():
    return _render_rollout(RolloutForm(formdata=None, percentage=rollout.percentage()))


@bp.post("/rollout")
def change_rollout():
    form = RolloutForm()
    if not form.validate_on_submit():
        return _render_rollout(form, 422)
    try:
        change = rollout.set_percentage(form.percentage.data, current_user.id, form.reason.data)
    except DomainError as exc:
        db.session.rollback()
        form.percentage.errors = [*form.percentage.errors, exc.message]
        return _render_rollout(form, exc.status)
    db.session.commit()
    flash(
        f"Credit enforcement now applies to {change.percentage}% of free users "
        f"(was {change.previous}%).",
        "success",
    )
    return redirect(url_for("admin.rollout_page"))
