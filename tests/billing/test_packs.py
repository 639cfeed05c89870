"""Credit packs from Creem's facts: a paid order grants its pack once, however its
checkout.completed arrives (retries, replays under new event ids, racing deliveries are in
tests/services/test_credit_lots_concurrency.py); a refund takes back what is unspent and
flags the rest; the checkout starts from the app's pages."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from credit_app.billing import packs, webhooks
from credit_app.errors import WebhookEventUnresolved
from credit_app.models import CreditLot, CreditTransaction, WebhookEvent
from credit_app.platform.extensions import db
from credit_app.services import credits
from credit_app.testing.creem import encode, event_envelope, new_id
from tests.creem_support import apply_events, buy_pack, make_stand_in, post_event


@pytest.fixture
def stand_in(app):
    return make_stand_in(app)


def pack_rows(user_id: int) -> list[CreditTransaction]:
    return (
        db.session.execute(
            select(CreditTransaction)
            .where(
                CreditTransaction.user_id == user_id,
                CreditTransaction.feature_used.in_(("pack", "pack_refund")),
            )
            .order_by(CreditTransaction.id)
        )
        .scalars()
        .all()
    )


def test_a_paid_pack_grants_its_credits_as_a_purchased_lot(stand_in, user):
    order_id, events = buy_pack(stand_in, user)
    assert [event.event_type for event in events] == ["checkout.completed"]
    assert apply_events(events) == ["pack_granted"]
    status = credits.get_user_credits(user.id)
    assert (status.remaining, status.total) == (26, 26)
    lot = db.session.execute(select(CreditLot).filter_by(creem_order_id=order_id)).scalar_one()
    assert (lot.user_id, lot.granted, lot.remaining, lot.purchased, lot.expires_at) == (
        user.id,
        20,
        20,
        True,
        None,
    )
    [row] = pack_rows(user.id)
    assert row.kind == "grant" and row.amount == 20 and row.metadata_["order_id"] == order_id


def test_the_same_order_again_under_new_event_ids_grants_nothing_more(stand_in, user):
    _order_id, events = buy_pack(stand_in, user)
    replay = json.loads(events[0].body)
    copies = [
        event_envelope("checkout.completed", replay["object"], replay["created_at"] + n)
        for n in range(1, 4)
    ]
    assert apply_events(events + copies + events) == [
        "pack_granted",
        "pack_already_granted",
        "pack_already_granted",
        "pack_already_granted",
        "already_processed",
    ]
    assert credits.get_user_credits(user.id).remaining == 26
    assert len(pack_rows(user.id)) == 1


def test_the_webhook_route_stores_and_queues_a_pack_order(client, stand_in, user):
    _order_id, events = buy_pack(stand_in, user)
    assert post_event(client, events[0]).status_code == 200
    assert post_event(client, events[0]).status_code == 200
    stored = webhooks._locked_event(events[0].id)
    assert stored.order_id and stored.metadata_user_id == str(user.id)
    assert webhooks.process_event(events[0].id) == "pack_granted"
    assert credits.get_user_credits(user.id).remaining == 26


def test_a_full_refund_takes_back_the_unspent_credits_and_flags_the_spent(stand_in, user):
    order_id, events = buy_pack(stand_in, user)
    apply_events(events)
    for index in range(23):
        credits.consume_credit(user.id, "interior", f"spend-{index}")
    assert credits.get_user_credits(user.id).remaining == 3
    refund = stand_in.refund_order(order_id)
    assert apply_events([refund, refund]) == ["pack_refund_shortfall", "already_processed"]
    assert credits.get_user_credits(user.id).remaining == 0
    lot = db.session.execute(select(CreditLot).filter_by(creem_order_id=order_id)).scalar_one()
    assert (lot.remaining, lot.refund_shortfall) == (0, 17)
    assert lot.refunded_at is not None
    assert [item.id for item in credits.refund_shortfalls()] == [lot.id]
    taken = pack_rows(user.id)[-1]
    assert (taken.kind, taken.amount, taken.metadata_["shortfall"]) == ("adjust", -3, 17)


def test_a_refund_of_an_unspent_pack_leaves_the_free_credits(stand_in, user):
    order_id, events = buy_pack(stand_in, user)
    apply_events(events)
    credits.consume_credit(user.id, "interior")
    assert apply_events([stand_in.refund_order(order_id)]) == ["pack_refunded"]
    assert credits.get_user_credits(user.id).remaining == 5
    assert credits.refund_shortfalls() == []


def test_a_partial_refund_takes_back_its_share(stand_in, user):
    order_id, events = buy_pack(stand_in, user)
    apply_events(events)
    assert apply_events([stand_in.refund_order(order_id, amount=250)]) == ["pack_refunded"]
    assert credits.get_user_credits(user.id).remaining == 16
    lot = db.session.execute(select(CreditLot).filter_by(creem_order_id=order_id)).scalar_one()
    assert lot.remaining == 10 and lot.expires_at is None


def test_a_refund_before_its_pack_was_granted_waits_for_it(stand_in, user):
    order_id, _events = buy_pack(stand_in, user)
    refund = stand_in.refund_order(order_id)
    with pytest.raises(WebhookEventUnresolved):
        apply_events([refund])
    db.session.rollback()
    assert credits.get_user_credits(user.id).remaining == 6


def test_a_checkout_of_a_product_that_is_no_pack_and_no_subscription_is_ignored(stand_in, user):
    body = encode(
        event_envelope(
            "checkout.completed",
            {
                "id": new_id("ch"),
                "object": "checkout",
                "order": {"id": new_id("ord"), "product": "prod_unknown"},
                "metadata": {"user_id": str(user.id)},
                "status": "completed",
            },
            1_700_000_000_000,
        )
    )
    assert apply_events([json.loads(body)]) == ["ignored"]
    assert credits.get_user_credits(user.id).remaining == 6


def test_a_pack_event_naming_no_order_is_unresolved(app, user):
    product_id = app.config["CREDIT_PACKS"][0]["product_id"]
    stored = WebhookEvent(
        event_id="evt_no_order",
        event_type="checkout.completed",
        payload={},
        event_created_at=credits.utcnow(),
        product_id=product_id,
        metadata_user_id=str(user.id),
    )
    with pytest.raises(WebhookEventUnresolved):
        packs.apply_pack_order(stored)
    with pytest.raises(WebhookEventUnresolved):
        packs.apply_pack_refund(stored)
    assert pack_rows(user.id) == []


def test_the_pack_checkout_sends_a_free_user_to_creem(user_client, app, monkeypatch):
    from credit_app.testing.creem import create_stand_in_app, serve_stand_in

    stand_in_app = create_stand_in_app(make_stand_in(app))
    with serve_stand_in(stand_in_app) as url:
        monkeypatch.setitem(app.config, "CREEM_API_URL", url)
        monkeypatch.delitem(app.extensions, "creem_client", raising=False)
        response = user_client.post(
            "/dashboard/subscription/packs/checkout",
            data={"pack": "pack_20", "feature": "interior"},
        )
        assert response.status_code == 303
        assert response.headers["Location"].startswith(url + "/checkout/")
        [checkout] = stand_in_app.extensions["creem_stand_in"].checkouts.values()
        assert checkout.product_id == "prod_standin_pack_20"
        assert checkout.metadata["pack"] == "pack_20"
        unknown = user_client.post(
            "/dashboard/subscription/packs/checkout", data={"pack": "pack_999"}
        )
        assert unknown.status_code == 422
        assert b"Unknown credit pack" in unknown.data


def test_pro_users_are_not_sold_packs(app, make_user):
    pro = make_user(plan="pro")
    client = app.test_client(user=pro)
    client.environ_base["HTTP_SEC_FETCH_SITE"] = "same-origin"
    response = client.post("/dashboard/subscription/packs/checkout", data={"pack": "pack_20"})
    assert response.status_code == 409


def test_admins_list_and_clear_pack_shortfalls(app, stand_in, user):
    order_id, events = buy_pack(stand_in, user)
    apply_events(events)
    credits.remove_credits(user.id, 10, "test: spend into the pack")
    apply_events([stand_in.refund_order(order_id)])
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["billing", "pack-shortfalls"])
    assert f"{order_id}  user {user.id}  20 credits  4 spent before the refund" in listed.output
    cleared = runner.invoke(args=["billing", "clear-pack-shortfall", order_id])
    assert cleared.exit_code == 0, cleared.output
    assert "No refunded packs" in runner.invoke(args=["billing", "pack-shortfalls"]).output
    again = runner.invoke(args=["billing", "clear-pack-shortfall", order_id])
    assert again.exit_code == 1 and "no refund shortfall" in again.output
