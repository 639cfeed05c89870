"""Billing's subscriptions: every access rule, period ends and grace with an explicit `now`,
order safety, foreign products, re-reads of ambiguous events, refunds and disputes, and the
Creem calls (checkout, cancel, resume, plan switch) against the stand-in over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from credit_app.billing import checkout as billing_checkout
from credit_app.billing import subscriptions, webhooks
from credit_app.billing.plans import get_plan
from credit_app.errors import (
    AlreadySubscribed,
    NoSubscription,
    SubscriptionActionNotAllowed,
    UnknownPlan,
    ValidationFailed,
    WebhookEventUnresolved,
)
from credit_app.models import CreditTransaction, Subscription, WebhookEvent
from credit_app.platform.extensions import db
from credit_app.services import credits
from credit_app.testing.creem import (
    OTHER_PRODUCT_ID,
    create_stand_in_app,
    event_envelope,
    serve_stand_in,
)
from tests.creem_support import START, apply_events, custom_event, make_stand_in, subscribe
from tests.ledger_support import ledger_balance


def apply(events, now):
    return apply_events(events, now)


def api_reads(stand_in) -> int:
    return sum(
        1
        for method, path, _status in stand_in.requests
        if method == "GET" and path == "/v1/subscriptions"
    )


def plan_of(user):
    return credits.get_user_credits(user.id).subscription_status


def plan_changes(user):
    return (
        db.session.execute(
            select(CreditTransaction)
            .where(
                CreditTransaction.user_id == user.id,
                CreditTransaction.feature_used == "subscription",
            )
            .order_by(CreditTransaction.id)
        )
        .scalars()
        .all()
    )


def row(subscription):
    return db.session.execute(
        select(Subscription)
        .where(Subscription.creem_subscription_id == subscription.id)
        .execution_options(populate_existing=True)
    ).scalar_one()


class TestAccessRules:
    def test_paying_makes_the_user_pro_with_a_ledger_row_and_keeps_the_credits(
        self, creem, clock, user
    ):
        credits.consume_credit(user.id, "interior")
        sub, events = subscribe(creem, user)
        assert apply(events, clock.now) == ["applied", "applied", "applied"]
        assert plan_of(user) == "pro"
        (change,) = plan_changes(user)
        assert change.kind == "adjust" and change.amount == 0 and change.balance_after == 5
        assert change.metadata_["reason"] == "Pro started: payment received"
        assert change.metadata_["subscription_id"] == sub.id
        assert ledger_balance(user.id) == credits.get_user_credits(user.id).remaining == 5
        stored = row(sub)
        assert stored.status == "active" and stored.user_id == user.id
        assert stored.current_period_end == START + timedelta(days=30)
        assert stored.last_event_id == events[-1].id

    @pytest.mark.parametrize(
        "event_type", ["subscription.active", "subscription.paid", "subscription.trialing"]
    )
    def test_active_paid_and_trialing_each_give_pro(self, creem, clock, user, event_type):
        sub, _events = subscribe(creem, user)
        status = "trialing" if event_type.endswith("trialing") else "active"
        apply([custom_event(creem, sub, event_type, status, clock.now)], clock.now)
        assert plan_of(user) == "pro" and row(sub).status == status

    @pytest.mark.parametrize(
        "action, status", [("expire", "expired"), ("unpaid", "unpaid"), ("pause", "paused")]
    )
    def test_expired_unpaid_and_paused_mean_free(self, creem, clock, user, action, status):
        credits.consume_credit(user.id, "video")
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        clock.advance(days=3)
        creem.act(sub.id, action)
        assert apply(creem.events[-1:], clock.now) == ["applied"]
        assert plan_of(user) == "free" and row(sub).status == status
        downgrade = plan_changes(user)[-1]
        assert downgrade.metadata_["from"] == "pro" and downgrade.metadata_["to"] == "free"
        assert downgrade.metadata_["reason"].startswith("Back to the free plan: ")
        assert credits.get_user_credits(user.id).remaining == 5

    def test_scheduled_cancel_keeps_pro_until_the_period_end_then_the_sweep_downgrades(
        self, creem, clock, user
    ):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        clock.advance(days=10)
        creem.act(sub.id, "cancel-scheduled")
        apply(creem.events[-1:], clock.now)
        period_end = START + timedelta(days=30)
        assert plan_of(user) == "pro"
        stored = row(sub)
        assert stored.status == "scheduled_cancel" and stored.access_ends_at == period_end
        assert user.id not in subscriptions.downgrade_lapsed(now=period_end - timedelta(seconds=1))
        assert plan_of(user) == "pro"
        assert user.id in subscriptions.downgrade_lapsed(now=period_end)
        assert plan_of(user) == "free"
        assert plan_changes(user)[-1].metadata_["reason"] == (
            "Back to the free plan: subscription ended at the end of its period"
        )
        assert user.id not in subscriptions.downgrade_lapsed(now=period_end + timedelta(days=1))
        assert len(plan_changes(user)) == 2

    def test_canceled_at_the_period_end_keeps_pro_until_then(self, creem, clock, user):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        creem.act(sub.id, "cancel-scheduled")
        creem.act(sub.id, "end-period")
        assert creem.events[-1].event_type == "subscription.canceled"
        apply(creem.events[-2:], clock.now)
        assert row(sub).status == "canceled" and plan_of(user) == "pro"
        period_end = START + timedelta(days=30)
        assert subscriptions.get_subscription_status(user.id, clock.now).ends_at == period_end
        subscriptions.downgrade_lapsed(now=period_end + timedelta(minutes=1))
        assert plan_of(user) == "free"

    def test_a_mid_period_cancel_keeps_pro_until_the_paid_period_ends(self, creem, clock, user):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        clock.advance(days=10)
        creem.act(sub.id, "cancel-immediate")
        canceled = creem.events[-1]
        assert canceled.event_type == "subscription.canceled"
        assert canceled.payload["object"]["current_period_end_date"] is not None
        assert apply([canceled], clock.now) == ["applied"]
        period_end = START + timedelta(days=30)
        assert row(sub).status == "canceled" and row(sub).access_ends_at == period_end
        assert plan_of(user) == "pro"
        assert user.id in subscriptions.downgrade_lapsed(now=period_end)
        assert plan_of(user) == "free"

    def test_creems_canceled_sample_keeps_the_rest_of_its_period(self, creem, clock, user):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        sent = creem.send_sample("subscription.canceled", sub.id)
        sample_end = datetime(2024, 11, 12, 11, 58, 38, tzinfo=UTC)
        assert apply([sent], sample_end - timedelta(days=1)) == ["stale"]
        fresh = custom_event(
            creem,
            sub,
            "subscription.canceled",
            "canceled",
            clock.now + timedelta(minutes=1),
            canceled_at=clock.now.isoformat(),
        )
        assert apply([fresh], clock.now) == ["applied"]
        assert plan_of(user) == "pro" and row(sub).access_ends_at == START + timedelta(days=30)

    def test_a_cancellation_learned_after_its_period_end_downgrades_at_once(
        self, creem, clock, user
    ):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        creem.act(sub.id, "cancel-scheduled")
        apply(creem.events[-1:], START + timedelta(days=31))
        assert plan_of(user) == "free"

    def test_past_due_keeps_pro_for_the_grace_period(self, app, creem, clock, user, monkeypatch):
        monkeypatch.setitem(app.config, "PAST_DUE_GRACE_DAYS", 5)
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        clock.advance(days=30)
        creem.act(sub.id, "past-due")
        apply(creem.events[-1:], clock.now)
        grace_end = clock.now + timedelta(days=5)
        assert plan_of(user) == "pro" and row(sub).access_ends_at == grace_end
        assert subscriptions.get_subscription_status(user.id, clock.now).ends_at == grace_end
        assert user.id not in subscriptions.downgrade_lapsed(now=grace_end - timedelta(minutes=1))
        assert user.id in subscriptions.downgrade_lapsed(now=grace_end)
        assert plan_changes(user)[-1].metadata_["reason"] == (
            "Back to the free plan: past-due grace period ended"
        )

    def test_a_second_past_due_event_does_not_restart_the_grace(self, creem, clock, user):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        creem.act(sub.id, "past-due")
        apply(creem.events[-1:], clock.now)
        first_end = row(sub).access_ends_at
        clock.advance(days=1)
        update = custom_event(creem, sub, "subscription.update", "past_due", clock.now)
        apply([update], clock.now)
        assert row(sub).access_ends_at == first_end

    def test_paying_after_past_due_ends_the_grace(self, creem, clock, user):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        creem.act(sub.id, "past-due")
        clock.advance(days=1)
        creem.act(sub.id, "renew")
        apply(creem.events[-2:], clock.now)
        stored = row(sub)
        assert stored.status == "active" and stored.access_ends_at is None
        assert plan_of(user) == "pro"

    def test_a_full_refund_removes_pro_and_flags_the_subscription_for_the_admins(
        self, creem, clock, user
    ):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        creem.act(sub.id, "refund")
        assert apply(creem.events[-1:], clock.now) == ["flagged"]
        stored = row(sub)
        assert plan_of(user) == "free" and stored.staff_flag == "refund"
        assert plan_changes(user)[-1].metadata_["reason"] == (
            "Back to the free plan: payment refunded"
        )
        assert stored in subscriptions.flagged_subscriptions()
        creem.act(sub.id, "renew")
        apply(creem.events[-1:], clock.now)
        assert plan_of(user) == "free", "a flagged subscription gives no access"
        status = subscriptions.get_subscription_status(user.id, clock.now)
        assert status.flagged and not status.can_cancel and not status.can_resume
        subscriptions.clear_flag(sub.id, now=clock.now)
        assert plan_of(user) == "pro" and row(sub).staff_flag is None

    def test_a_partial_refund_changes_nothing(self, creem, clock, user):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        creem.act(sub.id, "partial-refund")
        assert apply(creem.events[-1:], clock.now) == ["partial_refund"]
        assert plan_of(user) == "pro" and row(sub).staff_flag is None

    def test_a_dispute_removes_pro_and_flags(self, creem, clock, user):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        creem.act(sub.id, "dispute")
        assert apply(creem.events[-1:], clock.now) == ["flagged"]
        assert plan_of(user) == "free" and row(sub).staff_flag == "dispute"

    def test_a_refund_for_a_subscription_not_seen_yet_is_stored_flagged(self, creem, clock, user):
        sub, _events = subscribe(creem, user)
        creem.act(sub.id, "refund")
        assert apply(creem.events[-1:], clock.now) == ["flagged"]
        assert row(sub).staff_flag == "refund" and plan_of(user) == "free"

    def test_a_refund_then_a_dispute_flag_dispute_in_either_order(self, creem, clock, user):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        creem.act(sub.id, "refund")
        clock.advance(minutes=1)
        creem.act(sub.id, "dispute")
        refund, dispute = creem.events[-2:]
        assert apply([dispute, refund], clock.now) == ["flagged", "stale_flag"]
        assert row(sub).staff_flag == "dispute" and plan_of(user) == "free"

    def test_another_subscription_keeps_pro_when_one_lapses(self, creem, clock, user):
        first, events = subscribe(creem, user)
        apply(events, clock.now)
        creem.act(first.id, "cancel-scheduled")
        apply(creem.events[-1:], clock.now)
        _second, events = subscribe(creem, user, "CREEM_PRODUCT_PRO_YEARLY")
        apply(events, clock.now)
        assert user.id not in subscriptions.downgrade_lapsed(now=START + timedelta(days=40))
        assert plan_of(user) == "pro"
        status = subscriptions.get_subscription_status(user.id, START + timedelta(days=40))
        assert status.plan_info.key == "pro_yearly"

    def test_subscribing_again_after_expiry_restores_pro(self, creem, clock, user):
        first, events = subscribe(creem, user)
        apply(events, clock.now)
        creem.act(first.id, "expire")
        apply(creem.events[-1:], clock.now)
        _second, events = subscribe(creem, user)
        apply(events, clock.now)
        assert plan_of(user) == "pro"
        assert [change.metadata_["to"] for change in plan_changes(user)] == ["pro", "free", "pro"]


class TestProducts:
    def test_another_product_of_the_store_is_stored_and_gives_no_pro(self, creem, clock, user):
        sub, events = subscribe(creem, user, product_id=OTHER_PRODUCT_ID)
        assert apply(events, clock.now) == ["foreign_product"] * 3
        stored = row(sub)
        assert stored.product_id == OTHER_PRODUCT_ID and stored.status == "active"
        assert plan_of(user) == "free" and plan_changes(user) == []
        assert stored in subscriptions.foreign_subscriptions()
        status = subscriptions.get_subscription_status(user.id, clock.now)
        assert status.subscription is None and not status.is_pro

    def test_a_foreign_product_beside_pro_changes_nothing(self, creem, clock, user):
        _sub, events = subscribe(creem, user)
        apply(events, clock.now)
        foreign, events = subscribe(creem, user, product_id=OTHER_PRODUCT_ID)
        apply(events, clock.now)
        creem.act(foreign.id, "expire")
        apply(creem.events[-1:], clock.now)
        assert plan_of(user) == "pro" and len(plan_changes(user)) == 1
        assert subscriptions.get_subscription_status(user.id, clock.now).plan_info.key == (
            "pro_monthly"
        )


class TestEvents:
    def test_an_older_event_does_not_roll_the_state_back(self, creem, clock, user):
        sub, events = subscribe(creem, user)
        clock.advance(days=1)
        creem.act(sub.id, "expire")
        assert "metadata" not in creem.events[-1].payload["object"]
        assert apply(creem.events[-1:], clock.now) == ["applied_from_api"]
        assert apply(events, clock.now) == ["stale", "stale", "stale"]
        assert row(sub).status == "expired" and plan_of(user) == "free"
        assert plan_changes(user) == []

    def test_checkout_completed_alone_links_the_subscription_to_the_user(self, creem, clock, user):
        sub, events = subscribe(creem, user)
        apply(events[:1], clock.now)
        stored = row(sub)
        assert stored.user_id == user.id and stored.creem_customer_id == sub.customer_id
        assert stored.product_id == sub.product.id and plan_of(user) == "pro"

    def test_a_later_subscription_of_a_known_customer_finds_its_user(self, creem, clock, user):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        other = creem.subscription(sub.id)
        second = custom_event(
            creem, other, "subscription.paid", "active", clock.now, id="sub_second", metadata={}
        )
        apply([second], clock.now)
        assert (
            db.session.execute(
                select(Subscription.user_id).where(
                    Subscription.creem_subscription_id == "sub_second"
                )
            ).scalar_one()
            == user.id
        )

    def test_a_metadata_less_first_event_is_resolved_through_creem_at_once(
        self, creem, clock, user
    ):
        sub, events = subscribe(creem, user)
        active = events[1]
        assert active.event_type == "subscription.active"
        assert "metadata" not in active.payload["object"]
        assert apply([active], clock.now) == ["applied_from_api"]
        assert row(sub).user_id == user.id and plan_of(user) == "pro"
        assert apply([events[0], events[2]], clock.now) == ["stale", "applied"]

    def test_a_metadata_less_event_of_a_known_subscription_needs_no_call(self, creem, clock, user):
        sub, events = subscribe(creem, user)
        apply(events[:1], clock.now)
        before = api_reads(creem)
        assert apply(events[1:], clock.now) == ["applied", "applied"]
        assert api_reads(creem) == before and row(sub).user_id == user.id

    def test_creems_expired_sample_saying_active_is_re_read(self, creem, clock, user):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        clock.advance(days=31)
        creem.act(sub.id, "expire")
        sent = creem.send_sample("subscription.expired", sub.id)
        assert sent.payload["object"]["status"] == "active"
        assert apply([sent], clock.now) == ["applied_from_api"]
        assert row(sub).status == "expired" and plan_of(user) == "free"

    def test_two_snapshots_of_the_same_moment_that_disagree_are_settled_by_creem(
        self, creem, clock, user
    ):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        clock.advance(minutes=1)
        creem.act(sub.id, "pause")
        paused = creem.events[-1]
        twin = custom_event(
            creem, creem.subscription(sub.id), "subscription.update", "active", clock.now
        )
        twin["created_at"] = paused.created_at
        assert apply([paused, twin], clock.now) == ["applied", "applied_from_api"]
        assert row(sub).status == "paused" and plan_of(user) == "free"

    def test_a_cancellation_without_its_period_end_is_re_read(self, creem, clock, user):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        clock.advance(days=2)
        creem.act(sub.id, "cancel-scheduled")
        bare = creem.events[-1].payload
        del bare["object"]["current_period_end_date"]
        before = api_reads(creem)
        assert apply([bare], clock.now) == ["applied_from_api"]
        assert api_reads(creem) == before + 1
        assert row(sub).access_ends_at == START + timedelta(days=30) and plan_of(user) == "pro"

    def test_a_future_created_at_cannot_make_later_events_stale(self, creem, clock, user):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        clock.advance(minutes=1)
        creem.act(sub.id, "past-due")
        ahead = creem.events[-1].payload
        ahead["created_at"] = int((clock.now + timedelta(days=365)).timestamp() * 1000)
        apply([ahead], clock.now)
        assert row(sub).last_event_at == clock.now
        clock.advance(minutes=10)
        creem.act(sub.id, "renew")
        assert apply(creem.events[-1:], clock.now) == ["applied"]
        assert row(sub).status == "active"

    def test_an_event_for_nobody_is_unresolved_and_stores_nothing(self, creem, clock, user):
        sub, _events = subscribe(creem, user)
        orphan = custom_event(
            creem,
            sub,
            "subscription.paid",
            "active",
            clock.now,
            id="sub_unknown_to_creem",
            metadata={},
            customer={"id": "cust_unknown"},
        )
        with pytest.raises(WebhookEventUnresolved):
            apply([orphan], clock.now)
        assert (
            db.session.execute(
                select(Subscription).where(Subscription.creem_subscription_id == sub.id)
            )
            .scalars()
            .all()
            == []
        )

    def test_metadata_naming_a_missing_user_is_unresolved(self, creem, clock, user):
        sub, _events = subscribe(creem, user)
        creem.subscription(sub.id).metadata = {"user_id": "999999999"}
        orphan = custom_event(
            creem, sub, "subscription.paid", "active", clock.now, metadata={"user_id": "999999999"}
        )
        with pytest.raises(WebhookEventUnresolved):
            apply([orphan], clock.now)

    def test_unknown_event_types_and_one_time_checkouts_are_ignored(self, clock):
        assert apply([event_envelope("product.created", {"id": "prod_x"}, 1)], clock.now) == [
            "ignored"
        ]
        assert apply([event_envelope("checkout.completed", {"id": "ch_x"}, 1)], clock.now) == [
            "ignored"
        ]

    def test_a_refund_without_a_subscription_is_unresolved(self, creem, clock):
        refund = event_envelope("refund.created", {"id": "ref_1", "refund_amount": 1}, 1)
        with pytest.raises(WebhookEventUnresolved):
            apply([refund], clock.now)
        unknown = event_envelope("dispute.created", {"id": "d", "subscription": "sub_zz"}, 1)
        with pytest.raises(WebhookEventUnresolved):
            apply([unknown], clock.now)

    def test_a_stored_subscription_event_naming_no_subscription_is_unresolved(self, clock):
        stored = WebhookEvent(
            event_id="evt_no_subscription",
            event_type="subscription.active",
            payload={},
            event_created_at=clock.now,
        )
        with pytest.raises(WebhookEventUnresolved):
            webhooks.apply_stored_event(stored, clock.now)


class TestStatus:
    def test_a_user_without_a_subscription(self, user):
        status = subscriptions.get_subscription_status(user.id)
        assert status.plan == "free" and status.subscription is None
        assert not (status.can_cancel or status.can_resume or status.can_manage_billing)

    def test_an_active_subscription_renews_and_can_be_canceled(self, creem, clock, user):
        _sub, events = subscribe(creem, user)
        apply(events, clock.now)
        status = subscriptions.get_subscription_status(user.id, clock.now)
        assert status.is_pro and status.entitled and status.status == "active"
        assert status.renews_at == START + timedelta(days=30) and status.ends_at is None
        assert status.can_cancel and status.can_manage_billing and not status.can_resume
        assert status.plan_info.key == "pro_monthly"

    def test_a_scheduled_cancel_can_be_resumed_until_it_ends(self, creem, clock, user):
        sub, events = subscribe(creem, user)
        apply(events, clock.now)
        creem.act(sub.id, "cancel-scheduled")
        apply(creem.events[-1:], clock.now)
        status = subscriptions.get_subscription_status(user.id, clock.now)
        assert status.can_resume and not status.can_cancel and status.renews_at is None
        later = subscriptions.get_subscription_status(user.id, START + timedelta(days=31))
        assert not later.can_resume

    def test_plans_come_from_configuration(self, app, monkeypatch):
        monkeypatch.setitem(app.config, "PRO_YEARLY_PRICE", "€99 / year")
        yearly = get_plan("pro_yearly")
        assert yearly.price == "€99 / year"
        assert yearly.product_id == app.config["CREEM_PRODUCT_PRO_YEARLY"]
        with pytest.raises(UnknownPlan):
            get_plan("pro_forever")


@pytest.fixture
def served(app, monkeypatch):
    """The stand-in served over HTTP on 127.0.0.1, and the app pointed at it."""
    stand_in_app = create_stand_in_app(make_stand_in(app))
    with serve_stand_in(stand_in_app) as url:
        monkeypatch.setitem(app.config, "CREEM_API_URL", url)
        yield stand_in_app.extensions["creem_stand_in"]


class TestCreemCalls:
    def test_start_checkout_opens_a_checkout_with_the_user_and_the_way_back(self, served, user):
        started = billing_checkout.start_checkout(user, "pro_yearly", "video")
        checkout = served.checkouts[started.checkout_id]
        assert started.checkout_url.endswith(f"/checkout/{checkout.id}")
        assert checkout.product_id == "prod_standin_pro_yearly"
        assert checkout.metadata == {
            "user_id": str(user.id),
            "plan": "pro_yearly",
            "feature": "video",
        }
        assert checkout.customer_email == user.email
        assert checkout.success_url == (
            "http://localhost/dashboard/subscription/return?feature=video"
        )
        assert checkout.request_id == started.request_id

    def test_an_unknown_feature_returns_to_the_subscription_page(self, served, user):
        started = billing_checkout.start_checkout(user, "pro_monthly", "../../evil")
        assert served.checkouts[started.checkout_id].success_url == (
            "http://localhost/dashboard/subscription/return"
        )

    def test_checkout_refusals(self, served, make_user, user):
        with pytest.raises(UnknownPlan):
            billing_checkout.start_checkout(user, "platinum", None)
        with pytest.raises(AlreadySubscribed):
            billing_checkout.start_checkout(make_user(plan="pro"), "pro_monthly", None)
        assert served.checkouts == {}

    def test_cancel_resume_and_portal(self, served, user):
        sub, events = subscribe(served, user)
        apply(events, datetime.now(UTC))
        canceled = subscriptions.cancel_subscription(user.id)
        assert canceled.status == "scheduled_cancel" and canceled.access_ends_at is not None
        assert served.subscription(sub.id).status == "scheduled_cancel"
        assert plan_of(user) == "pro"
        with pytest.raises(SubscriptionActionNotAllowed):
            subscriptions.cancel_subscription(user.id)
        resumed = subscriptions.resume_subscription(user.id)
        assert resumed.status == "active" and resumed.access_ends_at is None
        assert plan_changes(user)[-1].metadata_["to"] == "pro"
        with pytest.raises(SubscriptionActionNotAllowed):
            subscriptions.resume_subscription(user.id)
        link = subscriptions.customer_portal_url(user.id)
        assert link.endswith(f"/portal/{sub.customer_id}")

    def test_creem_refusing_a_resume_is_not_allowed(self, served, user):
        sub, events = subscribe(served, user)
        apply(events, datetime.now(UTC))
        subscriptions.cancel_subscription(user.id)
        served.subscription(sub.id).status = "active"
        with pytest.raises(SubscriptionActionNotAllowed, match="did not allow"):
            subscriptions.resume_subscription(user.id)

    def test_an_unknown_cancel_mode_is_refused_before_calling_creem(self, served, user):
        with pytest.raises(ValidationFailed):
            subscriptions.cancel_subscription(user.id, mode="eventually")
        assert served.requests == []

    def test_nothing_to_change_without_a_subscription(self, served, user):
        for action in (
            subscriptions.cancel_subscription,
            subscriptions.resume_subscription,
            subscriptions.customer_portal_url,
            lambda user_id: subscriptions.switch_plan(user_id, "pro_yearly"),
        ):
            with pytest.raises(NoSubscription):
                action(user.id)

    def test_switching_monthly_to_yearly_and_back_through_creem(self, served, user):
        sub, events = subscribe(served, user)
        apply(events, datetime.now(UTC))
        status = subscriptions.get_subscription_status(user.id)
        assert status.switch_to.key == "pro_yearly"
        switched = subscriptions.switch_plan(user.id, "pro_yearly")
        assert switched.product_id == "prod_standin_pro_yearly"
        assert served.subscription(sub.id).product.id == "prod_standin_pro_yearly"
        assert served.requests[-1][:2] == ("POST", f"/v1/subscriptions/{sub.id}/upgrade")
        assert plan_of(user) == "pro" and len(plan_changes(user)) == 1
        after = subscriptions.get_subscription_status(user.id)
        assert after.plan_info.key == "pro_yearly" and after.switch_to.key == "pro_monthly"
        assert after.renews_at - datetime.now(UTC) > timedelta(days=360)
        with pytest.raises(SubscriptionActionNotAllowed, match="already"):
            subscriptions.switch_plan(user.id, "pro_yearly")
        apply(served.events[-2:], datetime.now(UTC))
        assert subscriptions.switch_plan(user.id, "pro_monthly").product_id == (
            "prod_standin_pro_monthly"
        )

    def test_a_subscription_that_is_not_running_cannot_switch(self, served, user):
        _sub, events = subscribe(served, user)
        apply(events, datetime.now(UTC))
        subscriptions.cancel_subscription(user.id)
        with pytest.raises(SubscriptionActionNotAllowed, match="running"):
            subscriptions.switch_plan(user.id, "pro_yearly")
        with pytest.raises(UnknownPlan):
            subscriptions.switch_plan(user.id, "pro_forever")
