"""Lots under many real connections: 20 deliveries of one pack order at once grant it
once; spends racing the expiry job never go below zero nor take from a lapsed lot."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select

from credit_app.billing import webhooks
from credit_app.billing.creem.events import sign_body
from credit_app.models import CreditLot, CreditLotMovement, CreditTransaction, WebhookEvent
from credit_app.platform.extensions import db
from credit_app.services import accounts, credits
from credit_app.testing.creem import encode, event_envelope
from tests.conftest import CONCURRENCY_DOMAIN, PASSWORD
from tests.creem_support import buy_pack, make_stand_in
from tests.services.test_credits_concurrency import run_at_once, state

pytestmark = pytest.mark.concurrency


@dataclass(frozen=True)
class Buyer:
    id: int
    email: str


def committed_user(app) -> Buyer:
    with app.app_context():
        user = accounts.register_user(f"{uuid.uuid4().hex[:12]}@{CONCURRENCY_DOMAIN}", PASSWORD)
        db.session.commit()
        return Buyer(user.id, user.email)


def test_twenty_deliveries_of_one_pack_order_at_once_grant_it_once(app):
    user = committed_user(app)
    stand_in = make_stand_in(app)
    with app.app_context():
        order_id, [completed] = buy_pack(stand_in, user)
    original = json.loads(completed.body)
    # Half are Creem's retries of the event itself, half replays of the order under new ids.
    bodies = [
        completed.body
        if index % 2 == 0
        else encode(
            event_envelope("checkout.completed", original["object"], original["created_at"] + index)
        )
        for index in range(20)
    ]
    secret = app.config["CREEM_WEBHOOK_SECRET"]
    outcomes: list[str] = []

    def deliver(index: int) -> None:
        stored, _ = webhooks.record_webhook(bodies[index], sign_body(bodies[index], secret))
        event_id = stored.event_id
        db.session.commit()
        outcomes.append(webhooks.process_event(event_id))

    try:
        assert run_at_once(app, 20, deliver) == ["ok"] * 20
        counted = Counter(outcomes)
        assert counted["pack_granted"] == 1
        assert (
            counted["pack_granted"] + counted["pack_already_granted"] + counted["already_processed"]
            == 20
        )
        remaining, ledger_sum, _ = state(app, user.id)
        assert remaining == ledger_sum == 26
        with app.app_context():
            lots = db.session.scalars(
                select(CreditLot).where(CreditLot.creem_order_id == order_id)
            ).all()
            grants = db.session.scalar(
                select(func.count())
                .select_from(CreditTransaction)
                .where(
                    CreditTransaction.user_id == user.id, CreditTransaction.feature_used == "pack"
                )
            )
            assert [(lot.user_id, lot.remaining) for lot in lots] == [(user.id, 20)]
            assert grants == 1
    finally:
        with app.app_context(), db.engine.begin() as connection:
            connection.execute(delete(WebhookEvent).where(WebhookEvent.order_id == order_id))


def test_spends_racing_the_expiry_job_never_take_a_lapsed_lot(app):
    user = committed_user(app)
    with app.app_context():
        start = credits.utcnow()
        lapses = start + timedelta(seconds=30)
        credits.grant_credits(user.id, 10, "promo", expires_at=lapses, now=start)
        db.session.commit()
        promo = db.session.scalar(
            select(CreditLot.id).where(
                CreditLot.user_id == user.id, CreditLot.source == "admin_grant"
            )
        )
    before, after = lapses - timedelta(seconds=1), lapses + timedelta(seconds=1)
    # 24 spends, half of them while the promo is still live, against 6 expiry runs after it
    # lapsed: 16 credits in all, so some spends must find nothing.
    outcomes = run_at_once(
        app,
        30,
        lambda index: (
            credits.expire_lapsed_lots(now=after)
            if index % 5 == 0
            else credits.consume_credit(
                user.id, "interior", f"race-{index}", now=before if index % 2 else after
            )
        ),
    )
    remaining, ledger_sum, _ = state(app, user.id)
    assert remaining == ledger_sum >= 0
    with app.app_context():
        rows = db.session.execute(
            select(CreditTransaction.id, CreditTransaction.kind, CreditTransaction.amount)
            .where(CreditTransaction.user_id == user.id)
            .order_by(CreditTransaction.id)
        ).all()
        [(expire_id, _, expired)] = [row for row in rows if row.kind == "expire"]
        drawn_from_promo = db.session.scalars(
            select(CreditLotMovement.transaction_id).where(
                CreditLotMovement.lot_id == promo,
                CreditLotMovement.amount < 0,
                CreditLotMovement.transaction_id != expire_id,
            )
        ).all()
        promo_spenders = db.session.scalars(
            select(CreditTransaction.generation_id).where(
                CreditTransaction.id.in_(drawn_from_promo)
            )
        ).all()
        lots = dict(
            db.session.execute(
                select(CreditLot.source, CreditLot.remaining).where(CreditLot.user_id == user.id)
            ).all()
        )
    spends = [row for row in rows if row.kind == "consume"]
    # Every draw from the promo came before its expiry row, and none of them at `after`
    # (the odd indexes spent at `before`).
    assert all(transaction_id < expire_id for transaction_id in drawn_from_promo)
    assert all(int(spender.rsplit("-", 1)[1]) % 2 == 1 for spender in promo_spenders)
    assert expired == -(10 - len(drawn_from_promo))
    assert lots["admin_grant"] == 0
    assert len(spends) == Counter(outcomes)["ok"] - 6
    assert len(spends) == 6 + len(drawn_from_promo) - remaining
    assert set(outcomes) <= {"ok", "insufficient_credits"}
