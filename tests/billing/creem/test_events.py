"""The typed boundary: every one of Creem's documented sample bodies becomes a typed event;
future dates are clamped; malformed bodies are refused; the shared signature schemes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from credit_app.billing.creem.events import (
    EVENT_STATUSES,
    EVENT_TYPES,
    FUTURE_TOLERANCE,
    parse_event,
    redirect_signature,
    sign_body,
    subscription_from_api,
    verify_redirect,
    verify_signature,
)
from credit_app.errors import CreemError, InvalidWebhookPayload, InvalidWebhookSignature
from credit_app.testing.creem import sample

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def body(envelope: dict) -> bytes:
    return json.dumps(envelope).encode()


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_documented_sample_becomes_a_typed_event(event_type):
    documented = sample(event_type)
    event = parse_event(body(documented), NOW)
    assert (event.event_id, event.event_type) == (documented["id"], event_type)
    assert event.created_at == datetime.fromtimestamp(documented["created_at"] / 1000, UTC)
    assert not event.created_at_clamped and event.payload == documented
    snapshot = event.subscription
    assert snapshot is not None and snapshot.subscription_id.startswith("sub_")
    assert snapshot.customer_id.startswith("cust_")


@pytest.mark.parametrize(
    "event_type",
    [
        "subscription.active",
        "subscription.expired",
        "subscription.update",
        "subscription.trialing",
        "subscription.paused",
    ],
)
def test_creem_documents_these_without_metadata(event_type):
    assert "metadata" not in sample(event_type)["object"]
    assert parse_event(body(sample(event_type)), NOW).subscription.metadata_user_id is None


def test_the_subscription_snapshots_read_each_shape():
    paid = parse_event(body(sample("subscription.paid")), NOW).subscription
    assert paid.status == "active" and paid.product_id == "prod_d1AY2Sadk9YAvLI0pj97f"
    assert paid.period_end == datetime(2024, 11, 12, 11, 58, 38, tzinfo=UTC)
    canceled = parse_event(body(sample("subscription.canceled")), NOW).subscription
    assert canceled.status == "canceled" and canceled.period_end > canceled.canceled_at
    checkout = parse_event(body(sample("checkout.completed")), NOW)
    assert checkout.checkout_id == "ch_4l0N34kxo16AhRKUHFUuXr"
    assert checkout.request_id == "my-request-id"
    assert checkout.subscription.product_id == "prod_d1AY2Sadk9YAvLI0pj97f"
    assert checkout.subscription.period_end is None
    expired = parse_event(body(sample("subscription.expired")), NOW)
    assert EVENT_STATUSES[expired.event_type] == "expired"
    assert expired.subscription.status == "active"
    refund = parse_event(body(sample("refund.created")), NOW)
    assert (refund.amount_paid, refund.amount_refunded) == (1210, 1210)
    dispute = parse_event(body(sample("dispute.created")), NOW)
    assert dispute.subscription.subscription_id == "sub_5sD6zM482uwOaEoyEUDDJs"


def test_metadata_user_ids_must_be_digits():
    paid = sample("subscription.paid")
    for raw, expected in (("42", "42"), (42, "42"), ("42; drop", None), (True, None)):
        envelope = {**paid, "object": {**paid["object"], "metadata": {"user_id": raw}}}
        assert parse_event(body(envelope), NOW).subscription.metadata_user_id == expected


def test_a_created_at_far_ahead_is_clamped_to_the_receipt():
    ahead = {
        **sample("subscription.paid"),
        "created_at": int((NOW + timedelta(days=365)).timestamp() * 1000),
    }
    event = parse_event(body(ahead), NOW)
    assert event.created_at_clamped and event.created_at == NOW
    assert event.created_at_raw_ms == ahead["created_at"]
    near = {**ahead, "created_at": int((NOW + FUTURE_TOLERANCE).timestamp() * 1000)}
    event = parse_event(body(near), NOW)
    assert not event.created_at_clamped and event.created_at == NOW + FUTURE_TOLERANCE


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        body({"eventType": "subscription.paid", "created_at": 1, "object": {}}),
        body({"id": "evt_1", "created_at": 1, "object": {}}),
        body(
            {
                "id": "evt_1",
                "eventType": "subscription.paid",
                "created_at": "yesterday",
                "object": {"id": "sub_1", "status": "active"},
            }
        ),
        body({"id": "evt_1", "eventType": "subscription.paid", "created_at": 1}),
        body(
            {
                "id": "evt_1",
                "eventType": "subscription.update",
                "created_at": 1,
                "object": {"id": "sub_1", "status": "dancing"},
            }
        ),
        body(
            {
                "id": "evt_1",
                "eventType": "subscription.update",
                "created_at": 1,
                "object": {"id": "sub_1"},
            }
        ),
        body(
            {
                "id": "evt_1",
                "eventType": "subscription.paid",
                "created_at": 1,
                "object": {"status": "active"},
            }
        ),
        body(
            {
                "id": "evt_1",
                "eventType": "subscription.paid",
                "created_at": 1,
                "object": {"id": "sub_1", "status": "active", "current_period_end_date": "soon"},
            }
        ),
    ],
)
def test_malformed_bodies_are_refused(raw):
    with pytest.raises(InvalidWebhookPayload):
        parse_event(raw, NOW)


def test_other_event_types_are_typed_without_a_subscription():
    event = parse_event(
        body(
            {
                "id": "evt_c",
                "eventType": "credits.granted",
                "created_at": 1,
                "object": {"id": "cct_1"},
            }
        ),
        NOW,
    )
    assert event.subscription is None and event.event_type == "credits.granted"


def test_api_answers_that_are_not_subscriptions_are_creem_errors():
    for answer in (
        {},
        {"id": "sub_1", "status": "dancing"},
        {"id": "sub_1", "status": "active", "canceled_at": "never"},
    ):
        with pytest.raises(CreemError):
            subscription_from_api(answer)


class TestSignatures:
    SECRET = "whsec_test"

    def test_a_valid_signature_passes(self):
        raw = b'{"id": "evt_1"}'
        verify_signature(raw, sign_body(raw, self.SECRET), self.SECRET)
        verify_signature(raw, sign_body(raw, self.SECRET).upper(), self.SECRET)

    @pytest.mark.parametrize(
        "signature",
        [
            None,
            "",
            "abc",
            sign_body(b"other", SECRET),
            sign_body(b'{"id": "evt_1"}', "whsec_wrong"),
        ],
    )
    def test_anything_else_fails(self, signature):
        with pytest.raises(InvalidWebhookSignature):
            verify_signature(b'{"id": "evt_1"}', signature, self.SECRET)

    def test_the_success_redirect_signature(self):
        params = [
            ("checkout_id", "ch_1"),
            ("order_id", "ord_1"),
            ("customer_id", "cust_1"),
            ("subscription_id", "sub_1"),
            ("product_id", "prod_1"),
            ("request_id", "r"),
        ]
        signed = [*params, ("signature", redirect_signature(params, "key"))]
        assert verify_redirect([("feature", "x"), *signed], "key")
        assert not verify_redirect(signed, "other-key")
        assert not verify_redirect(params, "key")
        assert not verify_redirect([("checkout_id", "ch_2"), *signed[1:]], "key")
