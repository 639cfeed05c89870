"""One-time notifications: one credit left, used up (upgrade link without a feature), Welcome
to Pro, cancellation confirmed with its date, payment failed with the grace end; opt-outs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from credit_app.jobs.registry import get_queue
from credit_app.models import Subscription
from credit_app.platform.extensions import db
from credit_app.services import credits, notifications
from tests.creem_support import Clock, apply_events, make_stand_in, subscribe
from tests.mail_support import empty_queue, outbox, run_jobs

START = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def quiet_queue():
    empty_queue()


def queued_functions() -> list[str]:
    return [job.func_name.rsplit(".", 1)[-1] for job in get_queue("default").jobs]


def statements_of(action) -> list[str]:
    """The SQL statements `action` sends to the database."""
    from sqlalchemy import event

    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    engine_connection = db.session.connection()
    event.listen(engine_connection, "before_cursor_execute", record)
    try:
        action()
    finally:
        event.remove(engine_connection, "before_cursor_execute", record)
    return seen


def spend(user, times: int) -> None:
    for _ in range(times):
        credits.consume_credit(user.id, "interior")
    db.session.commit()


class TestBalanceNotices:
    def test_an_ordinary_spend_enqueues_nothing(self, user):
        spend(user, 3)
        assert queued_functions() == []

    def test_detecting_a_crossing_adds_no_statement_to_a_spend(self, user):
        spend(user, 3)
        db.session.refresh(user)
        ordinary = statements_of(lambda: credits.consume_credit(user.id, "interior"))
        crossing = statements_of(lambda: credits.consume_credit(user.id, "interior"))
        assert credits.get_user_credits(user.id).remaining == 1
        assert len(crossing) == len(ordinary)
        assert not any(
            "outbound_emails" in sql or "email_opt_outs" in sql for sql in ordinary + crossing
        )
        db.session.commit()
        assert queued_functions() == ["notify_balance"]

    def test_one_left_then_used_up_each_once(self, user, mailbox):
        spend(user, 5)
        assert queued_functions() == ["notify_balance"]
        run_jobs()
        left = mailbox.wait_for(user.email, "one credit left")
        assert "1 of 6 credits" in left.text
        spend(user, 1)
        run_jobs()
        used_up = mailbox.wait_for(user.email, "used all your free credits")
        upgrade = [link for link in used_up.links if "/dashboard/subscription" in link]
        assert upgrade and all("feature" not in link for link in upgrade)
        assert [e.template for e in outbox(user.id)] == ["one_credit_left", "credits_used_up"]

    def test_running_the_decision_twice_sends_once_and_a_new_grant_starts_afresh(self, user):
        spend(user, 4)
        crossing = credits.consume_credit(user.id, "interior")
        db.session.commit()
        run_jobs()
        assert notifications.balance_notice(user.id, crossing.transaction_id) == "sent before"
        credits.grant_credits(user.id, 1, "goodwill")
        again = credits.consume_credit(user.id, "interior")
        db.session.commit()
        assert notifications.balance_notice(user.id, again.transaction_id) == "queued"
        assert len(outbox(user.id, "one_credit_left")) == 2

    def test_a_hold_that_was_returned_sends_nothing(self, user):
        spend(user, 4)
        reservation = credits.reserve_credit(user.id, "interior", "gen-held")
        db.session.commit()
        credits.release_reservation(reservation.id, user.id, "failed")
        db.session.commit()
        run_jobs()
        assert outbox(user.id, "one_credit_left") == []

    def test_opted_out_people_get_nothing(self, user):
        notifications.set_opt_outs(user, ["one_credit_left", "credits_used_up", "unknown"])
        assert user.email_opt_outs == ["credits_used_up", "one_credit_left"]
        db.session.commit()
        spend(user, 6)
        run_jobs()
        assert outbox(user.id) == []

    def test_pro_spends_never_notify(self, make_user):
        pro = make_user(plan="pro")
        spend(pro, 6)
        assert queued_functions() == []

    def test_unverified_addresses_get_no_balance_mail(self, make_user):
        user = make_user(verified=False)
        spend(user, 5)
        run_jobs()
        assert outbox(user.id) == []


@pytest.fixture
def clock():
    return Clock(START)


@pytest.fixture
def creem(app, clock):
    stand_in = make_stand_in(app, clock)
    yield stand_in
    stand_in.close()


def apply(events, now):
    return apply_events(events, now)


class TestSubscriptionNotices:
    def test_welcome_to_pro_once_with_what_changed(self, creem, clock, user, mailbox):
        credits.consume_credit(user.id, "interior")
        _, events = subscribe(creem, user)
        apply(events, clock.now)
        db.session.commit()
        apply(events, clock.now)
        db.session.commit()
        run_jobs()
        welcome = mailbox.wait_for(user.email, "Welcome to Roomcraft Pro")
        assert "unlimited" in welcome.text and "The 5 credits you had stay" in welcome.text
        assert len(outbox(user.id, "pro_welcome")) == 1

    def test_cancellation_confirmed_with_the_date_access_ends(self, creem, clock, user, mailbox):
        subscribe_and_act(creem, clock, user, "cancel-scheduled")
        cancel = mailbox.wait_for(user.email, "is canceled")
        period_end = START + timedelta(days=30)
        assert f"until {period_end:%B} {period_end.day}, {period_end.year}" in cancel.text
        assert len(outbox(user.id, "cancellation")) == 1
        notifications.subscription_notice(sub_row_id(user))
        assert len(outbox(user.id, "cancellation")) == 1

    def test_payment_failed_with_the_grace_end(self, app, creem, clock, user, mailbox, monkeypatch):
        monkeypatch.setitem(app.config, "PAST_DUE_GRACE_DAYS", 5)
        subscribe_and_act(creem, clock, user, "past-due")
        failed = mailbox.wait_for(user.email, "payment failed")
        # billing.access: past due keeps Pro for the grace days after the unpaid period's end
        row = db.session.get(Subscription, sub_row_id(user))
        grace_end = row.current_period_end + timedelta(days=5)
        assert row.access_ends_at == grace_end
        assert f"until {grace_end:%B} {grace_end.day}, {grace_end.year}" in failed.text

    def test_payment_failed_can_be_turned_off_but_receipts_cannot(self, creem, clock, user):
        notifications.set_opt_outs(user, ["payment_failed", "pro_welcome", "cancellation"])
        assert user.email_opt_outs == ["payment_failed"]
        subscribe_and_act(creem, clock, user, "past-due")
        assert outbox(user.id, "payment_failed") == []
        assert len(outbox(user.id, "pro_welcome")) == 1


def subscribe_and_act(creem, clock, user, action: str) -> None:
    """Subscribe `user` at the stand-in, then take `action` on the subscription there; apply
    all the events, commit, and run the jobs they queued."""
    sub, events = subscribe(creem, user)
    apply(events, clock.now)
    creem.act(sub.id, action)
    apply(creem.events[-1:], clock.now)
    db.session.commit()
    run_jobs()


def sub_row_id(user) -> int:
    from sqlalchemy import select

    from credit_app.models import Subscription

    return db.session.execute(
        select(Subscription.id).where(Subscription.user_id == user.id)
    ).scalar_one()
