"""Lots: the spend order, expiry (by the job, and by a spend that meets a lapsed lot),
releases back into the lots a hold took from, and the free refill."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from credit_app.errors import InsufficientCredits, ValidationFailed
from credit_app.jobs import credits as credit_jobs
from credit_app.models import CreditLot, CreditRefill, CreditTransaction
from credit_app.platform.extensions import db
from credit_app.services import credits


def lots(user_id: int) -> list[tuple[str, int]]:
    return [
        (lot.source, lot.remaining)
        for lot in db.session.execute(
            select(CreditLot)
            .where(CreditLot.user_id == user_id)
            .order_by(CreditLot.id)
            .execution_options(populate_existing=True)
        ).scalars()
    ]


def kinds(user_id: int) -> list[tuple[str, str, int]]:
    return [
        (row.kind, row.feature_used, row.amount)
        for row in db.session.execute(
            select(CreditTransaction)
            .where(CreditTransaction.user_id == user_id)
            .order_by(CreditTransaction.id)
        ).scalars()
    ]


def test_a_spend_takes_the_lot_that_expires_first_and_purchased_credits_last(user):
    start = credits.utcnow()
    credits.grant_pack(user.id, "ord_1", 2, pack="pack_20")
    credits.grant_credits(user.id, 2, "late promo", expires_at=start + timedelta(days=9), now=start)
    credits.grant_credits(user.id, 1, "soon promo", expires_at=start + timedelta(days=2), now=start)
    order = []
    for index in range(11):
        credits.consume_credit(user.id, "interior", f"g{index}", now=start)
        order.append([remaining for _, remaining in lots(user.id)])
    # lots: registration 6 (no expiry), pack 2, late promo 2, soon promo 1
    assert order[0] == [6, 2, 2, 0]
    assert order[2] == [6, 2, 0, 0]
    assert order[8] == [0, 2, 0, 0]
    assert order[10] == [0, 0, 0, 0]
    with pytest.raises(InsufficientCredits):
        credits.consume_credit(user.id, "interior", now=start)


def test_the_expiry_job_writes_expire_rows_once(user):
    start = credits.utcnow()
    credits.grant_credits(user.id, 4, "promo", expires_at=start + timedelta(hours=1), now=start)
    credits.consume_credit(user.id, "interior", now=start)
    assert credits.expire_lapsed_lots(now=start + timedelta(minutes=59)) == 0
    assert credits.expire_lapsed_lots(now=start + timedelta(hours=1)) == 1
    assert credits.expire_lapsed_lots(now=start + timedelta(hours=2)) == 0
    assert kinds(user.id)[-1] == ("expire", "expiry", -3)
    assert credits.get_user_credits(user.id).remaining == 6
    assert lots(user.id) == [("registration", 6), ("admin_grant", 0)]


def test_the_registered_job_expires_what_lapsed(user):
    credits.grant_credits(user.id, 2, "promo", expires_at=credits.utcnow() + timedelta(seconds=1))
    db.session.execute(
        db.update(CreditLot)
        .where(CreditLot.user_id == user.id, CreditLot.source == "admin_grant")
        .values(expires_at=credits.utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    assert credit_jobs.expire_lapsed_credits() == 1
    assert credit_jobs.expire_lapsed_credits() == 0
    assert credits.get_user_credits(user.id).remaining == 6


@pytest.mark.parametrize("generation_id", [None, "after-lapse"])
def test_a_spend_that_meets_only_lapsed_credits_expires_them_and_is_refused(user, generation_id):
    start = credits.utcnow()
    for index in range(6):
        credits.consume_credit(user.id, "interior", f"g{index}", now=start)
    credits.grant_credits(user.id, 2, "promo", expires_at=start + timedelta(hours=1), now=start)
    later = start + timedelta(hours=2)
    with pytest.raises(InsufficientCredits):
        credits.consume_credit(user.id, "interior", generation_id, now=later)
    assert credits.get_user_credits(user.id).remaining == 0
    assert kinds(user.id)[-1] == ("expire", "expiry", -2)


def test_a_spend_never_takes_from_a_lapsed_lot_the_job_has_not_expired_yet(user):
    start = credits.utcnow()
    credits.grant_credits(user.id, 2, "promo", expires_at=start + timedelta(hours=1), now=start)
    later = start + timedelta(hours=2)
    assert credits.consume_credit(user.id, "interior", now=later).remaining_credits == 7
    assert lots(user.id) == [("registration", 5), ("admin_grant", 2)]
    assert credits.expire_lapsed_lots(now=later) == 1
    assert credits.get_user_credits(user.id).remaining == 5


def test_a_release_gives_the_credit_back_to_the_lot_it_came_from(user):
    start = credits.utcnow()
    credits.grant_credits(user.id, 1, "promo", expires_at=start + timedelta(hours=1), now=start)
    hold = credits.reserve_credit(user.id, "video", "held", now=start)
    assert lots(user.id) == [("registration", 6), ("admin_grant", 0)]
    credits.release_reservation(hold.id, now=start)
    assert lots(user.id) == [("registration", 6), ("admin_grant", 1)]


def test_a_hold_released_after_its_lot_lapsed_is_expired_by_the_job(user):
    start = credits.utcnow()
    credits.grant_credits(user.id, 1, "promo", expires_at=start + timedelta(hours=1), now=start)
    hold = credits.reserve_credit(user.id, "video", "held", now=start, timeout=timedelta(hours=3))
    credits.release_reservation(hold.id, now=start + timedelta(hours=2))
    assert credits.expire_lapsed_lots(now=start + timedelta(hours=2)) == 1
    assert credits.get_user_credits(user.id).remaining == 6


def test_a_reservation_refused_after_expiring_lapsed_credits_leaves_no_hold(user):
    start = credits.utcnow()
    for index in range(6):
        credits.consume_credit(user.id, "interior", f"g{index}", now=start)
    credits.grant_credits(user.id, 1, "promo", expires_at=start + timedelta(hours=1), now=start)
    with pytest.raises(InsufficientCredits):
        credits.reserve_credit(user.id, "video", "late", now=start + timedelta(hours=2))
    assert (
        db.session.execute(select(credits.CreditReservation).filter_by(user_id=user.id)).first()
        is None
    )


def test_an_expiry_in_the_past_is_refused(user):
    with pytest.raises(ValidationFailed):
        credits.grant_credits(
            user.id, 1, "promo", expires_at=credits.utcnow() - timedelta(seconds=1)
        )


def test_welcome_credits_expire_when_configured(app, make_user, monkeypatch):
    monkeypatch.setitem(app.config, "WELCOME_CREDITS_EXPIRE_DAYS", 30)
    user = make_user()
    [lot] = db.session.execute(select(CreditLot).filter_by(user_id=user.id)).scalars()
    assert lot.expires_at is not None and lot.source == "registration"
    assert [item.id for item in credits.expiring_lots(user.id)] == [lot.id]


def test_the_refill_tops_up_once_per_period(user):
    start = credits.utcnow()
    for index in range(4):
        credits.consume_credit(user.id, "interior", f"g{index}")
    period = credits.refill_period("monthly", start)
    assert credits.refill_free_balance(user.id, 6, period, start) == 4
    assert credits.refill_free_balance(user.id, 6, period, start) is None
    credits.consume_credit(user.id, "interior", "after")
    assert credits.refill_free_balance(user.id, 6, period, start) is None
    assert credits.get_user_credits(user.id).remaining == 5
    next_period = credits.refill_period("monthly", start + timedelta(days=32))
    assert credits.refill_free_balance(user.id, 6, next_period, start) == 1
    rows = (
        db.session.execute(
            select(CreditRefill).filter_by(user_id=user.id).order_by(CreditRefill.period)
        )
        .scalars()
        .all()
    )
    assert [(row.period, row.amount) for row in rows] == [(period, 4), (next_period, 1)]
    assert kinds(user.id)[-1] == ("grant", "refill", 1)


def test_a_full_balance_still_uses_up_the_period(user):
    period = credits.refill_period("weekly", credits.utcnow())
    assert credits.refill_free_balance(user.id, 6, period) == 0
    credits.consume_credit(user.id, "interior")
    assert credits.refill_free_balance(user.id, 6, period) is None


def test_pro_users_are_not_refilled(make_user):
    pro = make_user(plan="pro")
    period = credits.refill_period("monthly", credits.utcnow())
    assert credits.refill_free_balance(pro.id, 10, period) is None


def test_the_refill_job_is_off_by_default_and_runs_when_configured(app, user, monkeypatch):
    for index in range(6):
        credits.consume_credit(user.id, "interior", f"g{index}")
    db.session.commit()
    assert app.config["FREE_REFILL_TO"] == 0
    assert credit_jobs.refill_free_credits() == 0
    assert credits.get_user_credits(user.id).remaining == 0
    monkeypatch.setitem(app.config, "FREE_REFILL_TO", 6)
    assert credit_jobs.refill_free_credits() >= 1
    assert credit_jobs.refill_free_credits() == 0
    assert credits.get_user_credits(user.id).remaining == 6
