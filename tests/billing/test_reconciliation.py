"""Reconciliation with Creem: drift of each kind planted at the stand-in (a lost webhook, a
subscription we never heard of, one Creem forgot, a product we do not sell), repaired through
the webhook path or reported for a person; a second run finds nothing; the job and the
admin report."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from credit_app.billing import reconciliation
from credit_app.billing.subscriptions import creem_client
from credit_app.jobs.reconciliation import reconcile_with_creem
from credit_app.models import ReconciliationFinding, ReconciliationRun, Subscription
from credit_app.platform.extensions import db
from credit_app.services import credits
from credit_app.testing.creem import OTHER_PRODUCT_ID
from tests.creem_support import apply_events, subscribe


def subscribed(creem, clock, user, **options):
    """A subscription we know of: paid at the stand-in, its events applied."""
    sub, events = subscribe(creem, user, **options)
    apply_events(events, clock.now)
    return sub


def run_once(clock) -> tuple[int, list[ReconciliationFinding]]:
    """One whole run at the clock's time, as the job does it (minus the commits)."""
    clock.advance(minutes=5)
    client = creem_client()
    run_id = reconciliation.start_run(clock.now).id
    for customer_id in reconciliation.known_customers():
        reconciliation.reconcile_customer(run_id, customer_id, client, clock.now)
    reconciliation.reconcile_rows(run_id, reconciliation.rows_without_customer(), client, clock.now)
    reconciliation.reconcile_plans(run_id, reconciliation.users_to_check(), clock.now)
    reconciliation.finish_run(run_id, now=clock.now)
    return run_id, reconciliation.findings_of(run_id)


def row(subscription_id: str) -> Subscription | None:
    return db.session.execute(
        select(Subscription)
        .where(Subscription.creem_subscription_id == subscription_id)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def plan_of(user) -> str:
    return credits.get_user_credits(user.id).subscription_status


def kinds(findings) -> list[tuple[str, str]]:
    return sorted((finding.kind, finding.resolution) for finding in findings)


def test_nothing_differs_after_webhooks_were_applied(creem, clock, user):
    subscribed(creem, clock, user)
    run_id, findings = run_once(clock)
    assert findings == []
    run = db.session.get(ReconciliationRun, run_id)
    assert (run.status, run.customers_checked, run.subscriptions_checked) == ("finished", 1, 1)


def test_a_lost_cancellation_webhook_is_applied_and_a_second_run_finds_nothing(creem, clock, user):
    sub = subscribed(creem, clock, user)
    clock.advance(days=3)
    creem.act(sub.id, "cancel-scheduled")  # its webhook never arrives
    assert row(sub.id).status == "active"
    _run_id, findings = run_once(clock)
    assert kinds(findings) == [("status", "fixed")]
    (finding,) = findings
    assert finding.ours["status"] == "active" and finding.theirs["status"] == "scheduled_cancel"
    assert finding.user_id == user.id and finding.creem_subscription_id == sub.id
    assert finding.detail == "Applied Creem's answer."
    assert row(sub.id).status == "scheduled_cancel"
    assert plan_of(user) == "pro"  # Pro until the paid period ends
    assert run_once(clock)[1] == []


def test_a_lost_expiry_takes_pro_away_with_its_ledger_row(creem, clock, user):
    sub = subscribed(creem, clock, user)
    creem.act(sub.id, "expire")
    _run_id, findings = run_once(clock)
    assert kinds(findings) == [("status", "fixed")]
    assert plan_of(user) == "free"
    change = credits.get_credit_history(user.id, limit=1).items[0]
    assert change.metadata_["source"] == "reconciliation"


def test_a_lost_plan_switch_changes_the_product(creem, clock, app, user):
    sub = subscribed(creem, clock, user)
    clock.advance(days=1)
    creem.act(sub.id, "switch-plan")
    _run_id, findings = run_once(clock)
    assert ("product", "fixed") in kinds(findings)
    assert row(sub.id).product_id == app.config["CREEM_PRODUCT_PRO_YEARLY"]
    (product,) = [finding for finding in findings if finding.kind == "product"]
    assert product.ours["plan"] != product.theirs["plan"]
    assert run_once(clock)[1] == []


def test_a_lost_renewal_moves_the_period_end(creem, clock, user):
    sub = subscribed(creem, clock, user)
    first_end = row(sub.id).current_period_end
    clock.advance(days=30)
    creem.act(sub.id, "renew")
    _run_id, findings = run_once(clock)
    assert kinds(findings) == [("period_end", "fixed")]
    assert row(sub.id).current_period_end > first_end
    assert row(sub.id).current_period_end == creem.subscription(sub.id).current_period_end
    assert run_once(clock)[1] == []


def test_a_subscription_we_never_heard_of_is_created_for_its_customer(creem, clock, user, app):
    subscribed(creem, clock, user)
    clock.advance(days=1)
    second, _events = subscribe(creem, user, plan="CREEM_PRODUCT_PRO_YEARLY")  # no webhooks
    assert row(second.id) is None
    _run_id, findings = run_once(clock)
    assert kinds(findings) == [("missing_here", "fixed")]
    created = row(second.id)
    assert created.user_id == user.id and created.status == "active"
    assert created.product_id == app.config["CREEM_PRODUCT_PRO_YEARLY"]
    assert run_once(clock)[1] == []


def test_a_subscription_creem_does_not_know_needs_a_person_and_keeps_its_row(creem, clock, user):
    sub = subscribed(creem, clock, user)
    with creem.lock:
        del creem.subscriptions[sub.id]
    _run_id, findings = run_once(clock)
    assert kinds(findings) == [("missing_at_creem", "needs_attention")]
    assert "still gives Pro" in findings[0].detail
    assert row(sub.id).status == "active" and plan_of(user) == "pro"
    # Reported again while it lasts: a person must decide.
    assert kinds(run_once(clock)[1]) == [("missing_at_creem", "needs_attention")]


def test_an_unknown_product_is_stored_gives_no_pro_and_needs_a_person(creem, clock, user):
    subscribed(creem, clock, user)
    clock.advance(days=1)
    other, _events = subscribe(creem, user, product_id=OTHER_PRODUCT_ID)
    _run_id, findings = run_once(clock)
    assert kinds(findings) == [("missing_here", "fixed"), ("unknown_product", "needs_attention")]
    (created,) = [finding for finding in findings if finding.kind == "missing_here"]
    assert created.detail == "Stored Creem's answer; its product gives no Pro."
    assert row(other.id).product_id == OTHER_PRODUCT_ID
    assert plan_of(user) == "pro"  # from the Pro subscription, not the other product
    assert run_once(clock)[1] == []


def test_a_plan_that_disagrees_with_the_subscriptions_is_set_right(creem, clock, make_user):
    drifted = make_user(plan="pro")  # Pro with no subscription at all
    _run_id, findings = run_once(clock)
    assert kinds(findings) == [("plan", "fixed")]
    assert findings[0].user_id == drifted.id and findings[0].ours == {"plan": "pro"}
    assert plan_of(drifted) == "free"
    assert run_once(clock)[1] == []


def test_a_user_id_with_no_user_is_skipped_by_the_plan_check(clock, make_user):
    drifted = make_user(plan="pro")
    run_id = reconciliation.start_run(clock.now).id
    changed = reconciliation.reconcile_plans(run_id, [drifted.id + 1000, drifted.id], clock.now)
    assert changed == [drifted.id]
    assert kinds(reconciliation.findings_of(run_id)) == [("plan", "fixed")]


def test_every_kind_of_drift_in_one_run_then_nothing(creem, clock, app, make_user):
    users = [make_user() for _ in range(5)]
    subs = [subscribed(creem, clock, user) for user in users]
    clock.advance(days=2)
    creem.act(subs[0].id, "cancel-scheduled")
    creem.act(subs[1].id, "switch-plan")
    clock.advance(days=29)
    creem.act(subs[2].id, "renew")
    subscribe(creem, users[3], plan="CREEM_PRODUCT_PRO_YEARLY")
    subscribe(creem, users[3], product_id=OTHER_PRODUCT_ID)
    with creem.lock:
        del creem.subscriptions[subs[4].id]
    _run_id, findings = run_once(clock)
    assert {finding.kind for finding in findings} >= {
        "status",
        "product",
        "period_end",
        "missing_here",
        "missing_at_creem",
        "unknown_product",
    }
    assert {finding.kind for finding in findings if finding.resolution == "needs_attention"} == {
        "missing_at_creem",
        "unknown_product",
    }
    second = run_once(clock)[1]
    assert kinds(second) == [("missing_at_creem", "needs_attention")]


def test_a_customer_creem_cannot_list_is_reported_not_guessed(creem, clock, user):
    sub = subscribed(creem, clock, user)
    creem.fail_next_requests = 100  # every read answers 503, retries included
    _run_id, findings = run_once(clock)
    creem.fail_next_requests = 0
    assert kinds(findings) == [("unreadable", "needs_attention")]
    assert row(sub.id).status == "active" and plan_of(user) == "pro"


@pytest.mark.concurrency
def test_the_job_commits_a_finished_run_and_skips_while_one_is_going(app, creem):
    with app.app_context():
        counts = reconcile_with_creem()
        assert isinstance(counts["run"], int)
        run = db.session.get(ReconciliationRun, counts["run"])
        assert run.status == "finished" and run.finished_at is not None
        going = reconciliation.start_run()
        db.session.commit()
        assert reconcile_with_creem() == {"skipped": going.id}
        db.session.delete(going)
        db.session.delete(db.session.get(ReconciliationRun, counts["run"]))
        db.session.commit()


def test_admins_see_the_report_with_what_differed(creem, clock, user, admin_client):
    sub = subscribed(creem, clock, user)
    creem.act(sub.id, "cancel-scheduled")
    run_id, _findings = run_once(clock)
    db.session.commit()
    page = admin_client.get("/admin/reconciliation")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f"Run {run_id}" in html and sub.id in html and user.email in html
    assert "fixed" in html and "status" in html
    assert admin_client.get(f"/admin/reconciliation?run={run_id}").status_code == 200
    assert admin_client.get("/admin/reconciliation?run=999999999").status_code == 404
    assert admin_client.get("/admin/reconciliation?run=x").status_code == 404


def test_the_report_is_for_admins_only(user_client):
    assert user_client.get("/admin/reconciliation").status_code == 403
    assert user_client.post("/admin/reconciliation/run").status_code == 403


def test_the_client_pages_through_a_customers_subscriptions(creem, clock, user):
    subs = [subscribed(creem, clock, user) for _ in range(3)]
    customer = subs[0].customer_id
    listed = list(creem_client().list_customer_subscriptions(customer, page_size=2))
    assert [snapshot.subscription_id for snapshot in listed] == [sub.id for sub in subs]
    pages = [
        path
        for method, path, _status in creem.requests
        if path == f"/v1/customers/{customer}/subscriptions"
    ]
    assert len(pages) == 2
    with pytest.raises(ValueError):
        list(creem_client().list_customer_subscriptions(customer, page_size=0))


def test_the_stand_in_answers_an_unknown_customer_404(creem):
    from credit_app.errors import CreemError

    with pytest.raises(CreemError) as raised:
        list(creem_client().list_customer_subscriptions("cust_nobody"))
    assert raised.value.creem_status == 404


def test_period_ends_within_a_second_are_equal(creem, clock, user):
    sub = subscribed(creem, clock, user)
    with creem.lock:
        creem.subscriptions[sub.id].current_period_end += timedelta(milliseconds=300)
    assert run_once(clock)[1] == []
