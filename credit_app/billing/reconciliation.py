"""Reconciliation with Creem: read every known customer's subscriptions from Creem's API,
compare them with our rows and plans, repair drift through the webhook path, report.

A run goes customer by customer (every `creem_customer_id` we hold), then through the rows
that have no customer yet, then through the users whose plan disagrees with what their
subscriptions give:

- a subscription Creem has and we differ on (status, product, period end), or do not have at
  all, is applied with `subscriptions.apply_snapshot` exactly as a webhook would be, taken at
  the moment the read began: any event newer than the read still wins, an older one cannot
  roll the repair back, and running the run again changes nothing (the second run finds no
  difference);
- a subscription we have and Creem does not know (404 on `GET /v1/subscriptions`) is left as
  it is and reported for a person: a missing answer is no proof of a cancellation;
- a product that is no configured plan is stored (it gives no Pro) and reported;
- a repair that did not converge (a newer event of ours, a flag) is reported too.

Every difference becomes a `ReconciliationFinding` with both sides as read and its
resolution, `fixed` or `needs_attention`. Services flush; the job commits per customer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select

from credit_app.billing import access
from credit_app.billing.creem.client import CreemClient
from credit_app.billing.creem.events import SubscriptionSnapshot
from credit_app.billing.plans import is_pro_product, plan_for_product
from credit_app.errors import CreemError, DomainError, WebhookEventUnresolved
from credit_app.models import ReconciliationFinding, ReconciliationRun, Subscription, User
from credit_app.models.base import read_current
from credit_app.platform.clock import utcnow
from credit_app.platform.extensions import db

log = logging.getLogger(__name__)

SOURCE = "reconciliation"
# Period ends closer than this count as equal (Creem's dates carry milliseconds).
PERIOD_TOLERANCE = timedelta(seconds=1)
# What a fixed finding tells the admin report, by subscriptions.apply_snapshot's outcome.
FIXED_DETAILS = {
    "applied": "Applied Creem's answer.",
    "applied_from_api": "Applied Creem's answer, read again from its API.",
    "foreign_product": "Stored Creem's answer; its product gives no Pro.",
    "stale": "They agree now: a newer event of ours had already made the same change.",
}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _plan_name(product_id: str | None) -> str | None:
    plan = plan_for_product(product_id) if product_id else None
    return plan.name if plan else None


def our_side(row: Subscription | None) -> dict[str, Any] | None:
    """Our row as a finding shows it."""
    if row is None:
        return None
    return {
        "status": row.status,
        "product_id": row.product_id,
        "plan": _plan_name(row.product_id),
        "period_end": _iso(row.current_period_end),
        "staff_flag": row.staff_flag,
    }


def their_side(snapshot: SubscriptionSnapshot | None) -> dict[str, Any] | None:
    """Creem's answer as a finding shows it."""
    if snapshot is None:
        return None
    return {
        "status": snapshot.status,
        "product_id": snapshot.product_id,
        "plan": _plan_name(snapshot.product_id),
        "period_end": _iso(snapshot.period_end),
        "customer_id": snapshot.customer_id,
    }


def differences(row: Subscription | None, snapshot: SubscriptionSnapshot) -> list[str]:
    """What differs between our row and Creem's snapshot (FINDING_KINDS names); a field
    Creem leaves out is not compared."""
    if row is None:
        return ["missing_here"]
    found = []
    if snapshot.status is not None and snapshot.status != row.status:
        found.append("status")
    if snapshot.product_id and snapshot.product_id != row.product_id:
        found.append("product")
    if snapshot.period_end is not None and (
        row.current_period_end is None
        or abs(snapshot.period_end - row.current_period_end) >= PERIOD_TOLERANCE
    ):
        found.append("period_end")
    return found


# -- runs ------------------------------------------------------------------------------------


def start_run(now: datetime | None = None) -> ReconciliationRun:
    run = ReconciliationRun(status="running", started_at=now or utcnow())
    db.session.add(run)
    db.session.flush()
    return run


def finish_run(
    run_id: int, error: str | None = None, now: datetime | None = None
) -> ReconciliationRun:
    """Close the run: finished, or failed with `error`."""
    run = db.session.get_one(ReconciliationRun, run_id)
    run.status = "failed" if error else "finished"
    run.error = error
    run.finished_at = now or utcnow()
    db.session.flush()
    return run


def running_run(stale_after: timedelta, now: datetime | None = None) -> ReconciliationRun | None:
    """A run still going that started within `stale_after` (older ones died with their job)."""
    now = now or utcnow()
    return db.session.execute(
        select(ReconciliationRun)
        .where(
            ReconciliationRun.status == "running", ReconciliationRun.started_at > now - stale_after
        )
        .order_by(ReconciliationRun.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def _record(
    run_id: int,
    kind: str,
    resolution: str,
    detail: str,
    *,
    row: Subscription | None = None,
    snapshot: SubscriptionSnapshot | None = None,
    before: dict[str, Any] | None = None,
    user_id: int | None = None,
    customer_id: str | None = None,
    subscription_id: str | None = None,
) -> ReconciliationFinding:
    finding = ReconciliationFinding(
        run_id=run_id,
        kind=kind,
        resolution=resolution,
        detail=detail,
        user_id=user_id if user_id is not None else (row.user_id if row else None),
        creem_subscription_id=subscription_id
        or (snapshot.subscription_id if snapshot else row.creem_subscription_id if row else None),
        creem_customer_id=customer_id
        or (snapshot.customer_id if snapshot else None)
        or (row.creem_customer_id if row else None),
        ours=before if before is not None else our_side(row),
        theirs=their_side(snapshot),
    )
    db.session.add(finding)
    return finding


# -- what we know ----------------------------------------------------------------------------


def known_customers(after: str | None = None, limit: int = 100) -> list[str]:
    """The Creem customers of our subscription rows, in id order, `limit` after `after`."""
    query = (
        select(Subscription.creem_customer_id)
        .where(Subscription.creem_customer_id.is_not(None))
        .group_by(Subscription.creem_customer_id)
        .order_by(Subscription.creem_customer_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(Subscription.creem_customer_id > after)
    return [
        customer_id
        for customer_id in db.session.execute(query).scalars()
        if customer_id is not None
    ]


def _rows_of_customer(customer_id: str) -> list[Subscription]:
    return list(
        read_current(
            select(Subscription)
            .where(Subscription.creem_customer_id == customer_id)
            .order_by(Subscription.id)
        )
    )


def _row(creem_subscription_id: str) -> Subscription | None:
    return read_current(
        select(Subscription).where(Subscription.creem_subscription_id == creem_subscription_id)
    ).one_or_none()


# -- one subscription ------------------------------------------------------------------------


def reconcile_subscription(
    run_id: int,
    snapshot: SubscriptionSnapshot,
    read_at: datetime,
    client: CreemClient,
    now: datetime | None = None,
) -> list[str]:
    """Compare one subscription as Creem has it with our row and repair what differs through
    the webhook path. Returns the kinds of difference found (empty when none).

    Raises UserNotFound (a row's user vanished), a database error.
    """
    from credit_app.billing import subscriptions

    row = _row(snapshot.subscription_id)
    found = differences(row, snapshot)
    unknown = bool(snapshot.product_id) and not is_pro_product(snapshot.product_id)
    if not found:
        return []
    before = our_side(row)
    try:
        outcome = subscriptions.apply_snapshot(snapshot, read_at, SOURCE, client=client, now=now)
    except WebhookEventUnresolved as exc:
        for kind in found:
            _record(
                run_id,
                kind,
                "needs_attention",
                exc.message,
                row=row,
                snapshot=snapshot,
                before=before,
            )
        return found
    except CreemError as exc:
        for kind in found:
            _record(
                run_id,
                kind,
                "needs_attention",
                f"Creem could not be read again to settle it: {exc.message}",
                row=row,
                snapshot=snapshot,
                before=before,
            )
        return found
    after = _row(snapshot.subscription_id)
    remaining = set(differences(after, snapshot))
    for kind in found:
        if kind in remaining or (kind == "missing_here" and after is None):
            why = (
                "a newer event of ours was kept"
                if outcome == "stale"
                else "applying Creem's answer did not make them agree"
            )
            _record(
                run_id,
                kind,
                "needs_attention",
                f"Still differs: {why}.",
                row=after,
                snapshot=snapshot,
                before=before,
            )
        else:
            _record(
                run_id,
                kind,
                "fixed",
                FIXED_DETAILS[outcome],
                row=after,
                snapshot=snapshot,
                before=before,
            )
    if unknown:
        _record(
            run_id,
            "unknown_product",
            "needs_attention",
            f"Product {snapshot.product_id} is no configured plan: stored, gives no Pro. "
            "Check what was sold.",
            row=after,
            snapshot=snapshot,
            before=before,
        )
        found.append("unknown_product")
    db.session.flush()
    return found


def _check_missing_at_creem(
    run_id: int, row: Subscription, read_at: datetime, client: CreemClient, now: datetime | None
) -> list[str]:
    """A row Creem's customer list did not name: ask for it by id. Creem not knowing it is
    reported for a person; an answer is reconciled like any other."""
    try:
        snapshot = client.get_subscription(row.creem_subscription_id)
    except CreemError as exc:
        if exc.creem_status == 404:
            gives_pro = access.entitled(row, now or utcnow())
            _record(
                run_id,
                "missing_at_creem",
                "needs_attention",
                "Creem does not know this subscription"
                + (" and it still gives Pro here." if gives_pro else "."),
                row=row,
            )
            return ["missing_at_creem"]
        _record(
            run_id,
            "unreadable",
            "needs_attention",
            f"Creem could not be read for this subscription: {exc.message}",
            row=row,
        )
        return ["unreadable"]
    return reconcile_subscription(run_id, snapshot, read_at, client, now)


# -- one customer ----------------------------------------------------------------------------


def reconcile_customer(
    run_id: int, customer_id: str, client: CreemClient, now: datetime | None = None
) -> list[str]:
    """Reconcile every subscription of one customer, ours and Creem's. Returns the kinds of
    difference found. Raises UserNotFound, a database error."""
    read_at = now or utcnow()
    run = db.session.get_one(ReconciliationRun, run_id)
    run.customers_checked += 1
    ours = _rows_of_customer(customer_id)
    try:
        remote = list(client.list_customer_subscriptions(customer_id))
    except CreemError as exc:
        if exc.creem_status != 404:
            _record(
                run_id,
                "unreadable",
                "needs_attention",
                f"Creem could not list this customer's subscriptions: {exc.message}",
                customer_id=customer_id,
                user_id=ours[0].user_id if ours else None,
            )
            db.session.flush()
            return ["unreadable"]
        remote = []
    found: list[str] = []
    for snapshot in remote:
        run.subscriptions_checked += 1
        found += reconcile_subscription(run_id, snapshot, read_at, client, now)
    listed = {snapshot.subscription_id for snapshot in remote}
    for row in ours:
        if row.creem_subscription_id not in listed:
            run.subscriptions_checked += 1
            found += _check_missing_at_creem(run_id, row, read_at, client, now)
    db.session.flush()
    return found


def rows_without_customer(after_id: int = 0, limit: int = 100) -> list[Subscription]:
    return list(
        db.session.execute(
            select(Subscription)
            .where(Subscription.creem_customer_id.is_(None), Subscription.id > after_id)
            .order_by(Subscription.id)
            .limit(limit)
        ).scalars()
    )


def reconcile_rows(
    run_id: int, rows: Iterable[Subscription], client: CreemClient, now: datetime | None = None
) -> list[str]:
    """Reconcile rows one by one by their id at Creem (those no customer list covers)."""
    read_at = now or utcnow()
    run = db.session.get_one(ReconciliationRun, run_id)
    found: list[str] = []
    for row in rows:
        run.subscriptions_checked += 1
        found += _check_missing_at_creem(run_id, row, read_at, client, now)
    db.session.flush()
    return found


# -- plans -----------------------------------------------------------------------------------


def users_to_check(after_id: int = 0, limit: int = 200) -> list[int]:
    """Users with a subscription row or on the Pro plan, in id order."""
    has_row = select(Subscription.id).where(Subscription.user_id == User.id).exists()
    return list(
        db.session.execute(
            select(User.id)
            .where(User.id > after_id, or_(has_row, User.subscription_status == "pro"))
            .order_by(User.id)
            .limit(limit)
        ).scalars()
    )


def reconcile_plans(run_id: int, user_ids: Iterable[int], now: datetime | None = None) -> list[int]:
    """Make each user's plan what their subscriptions give (through `sync_user_plan`, with
    its ledger row); returns the users whose plan changed. An id with no user is skipped."""
    from credit_app.billing import subscriptions

    now = now or utcnow()
    changed = []
    for user_id in user_ids:
        user = db.session.get(User, user_id)
        if user is None:
            continue
        before = user.subscription_status
        try:
            entry = subscriptions.sync_user_plan(
                user_id, now, "reconciled with Creem", {"source": SOURCE}
            )
        except DomainError as exc:
            _record(
                run_id,
                "plan",
                "needs_attention",
                exc.message,
                user_id=user_id,
                before={"plan": before},
            )
            continue
        if entry is not None:
            db.session.refresh(user)
            _record(
                run_id,
                "plan",
                "fixed",
                f"The plan was {before}; the subscriptions give {user.subscription_status}.",
                user_id=user_id,
                before={"plan": before},
            )
            changed.append(user_id)
    db.session.flush()
    return changed


# -- the report ------------------------------------------------------------------------------


def latest_runs(limit: int = 20) -> list[ReconciliationRun]:
    return list(
        db.session.execute(
            select(ReconciliationRun).order_by(ReconciliationRun.id.desc()).limit(limit)
        ).scalars()
    )


def findings_of(run_id: int, limit: int = 500) -> list[ReconciliationFinding]:
    """The run's findings, those needing a person first."""
    return list(
        db.session.execute(
            select(ReconciliationFinding)
            .where(ReconciliationFinding.run_id == run_id)
            .order_by((ReconciliationFinding.resolution == "fixed"), ReconciliationFinding.id)
            .limit(limit)
        ).scalars()
    )


def finding_counts(run_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Per run: how many findings were fixed and how many need a person."""
    ids = list(run_ids)
    counts: dict[int, dict[str, int]] = {
        run_id: {"fixed": 0, "needs_attention": 0} for run_id in ids
    }
    if not ids:
        return counts
    for run_id, resolution, count in db.session.execute(
        select(
            ReconciliationFinding.run_id,
            ReconciliationFinding.resolution,
            func.count(ReconciliationFinding.id),
        )
        .where(ReconciliationFinding.run_id.in_(ids))
        .group_by(ReconciliationFinding.run_id, ReconciliationFinding.resolution)
    ):
        counts[run_id][resolution] = count
    return counts
