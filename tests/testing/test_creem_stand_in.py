"""The Creem stand-in on its own: its hosted checkout, signed redirects and webhook deliveries
over real HTTP (with retries), and the renewals, duplicates and out-of-order sequences it sends
on request."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from flask import Flask, request

from credit_app.billing.creem.events import EVENT_TYPES
from credit_app.billing.creem.events import sign_body as sign
from credit_app.billing.creem.events import verify_redirect as verify_redirect_signature
from credit_app.testing.creem import (
    CreemStandIn,
    create_stand_in_app,
    get_stand_in,
    iso,
    sample,
    serve_stand_in,
)

pytestmark = pytest.mark.no_db  # no database, no app

API_KEY = "creem_test_stand_in"
SECRET = "whsec_stand_in_test"


@dataclass
class Receiver:
    """A webhook endpoint that records what it gets and answers the scripted statuses."""

    url: str
    received: list[tuple[str, bytes, str]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def types(self) -> list[str]:
        with self.lock:
            return [event_type for event_type, _body, _signature in self.received]

    def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return
            time.sleep(0.02)
        raise AssertionError(f"expected {count} deliveries, got {self.types()}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    app = Flask("receiver")
    state = Receiver(url="")

    @app.post("/billing/webhooks/creem")
    def webhook():
        body = request.get_data()
        with state.lock:
            state.received.append(
                (request.get_json()["eventType"], body, request.headers.get("creem-signature", ""))
            )
            status = state.answers.pop(0) if state.answers else 200
        return "", status

    with serve_stand_in(app) as url:
        state.url = url
        yield state


@pytest.fixture
def creem(receiver) -> Iterator[tuple[str, CreemStandIn]]:
    app = create_stand_in_app(api_key=API_KEY, webhook_secret=SECRET, retry_delays=(0.05, 0.05))
    with serve_stand_in(app) as url:
        yield url, get_stand_in(app)


def open_checkout(url: str, success_url: str) -> dict:
    response = httpx.post(
        f"{url}/v1/checkouts",
        headers={"x-api-key": API_KEY},
        json={
            "product_id": "prod_standin_pro_monthly",
            "request_id": "req-1",
            "success_url": success_url,
            "customer": {"email": "buyer@example.com"},
            "metadata": {"user_id": "3"},
        },
    )
    assert response.status_code == 200
    return response.json()


def pay(creem, receiver) -> tuple[CreemStandIn, str, httpx.Response]:
    url, state = creem
    opened = open_checkout(url, f"{receiver.url}/dashboard/subscription/return?feature=video")
    page = httpx.get(opened["checkout_url"])
    assert page.status_code == 200 and "Pay" in page.text and "19.00 USD / month" in page.text
    paid = httpx.post(opened["checkout_url"] + "/pay", data={"email": "buyer@example.com"})
    return state, opened["id"], paid


def test_pay_redirects_with_creems_signed_parameters(creem, receiver):
    _state, checkout_id, paid = pay(creem, receiver)
    assert paid.status_code == 303
    location = urlsplit(paid.headers["location"])
    params = parse_qsl(location.query)
    assert location.path == "/dashboard/subscription/return"
    assert [key for key, _value in params] == [
        "feature",
        "checkout_id",
        "order_id",
        "customer_id",
        "subscription_id",
        "product_id",
        "request_id",
        "signature",
    ]
    assert dict(params)["checkout_id"] == checkout_id
    assert verify_redirect_signature(params, API_KEY)
    assert not verify_redirect_signature(params, "another key")
    assert httpx.post(f"{creem[0]}/checkout/{checkout_id}/pay").status_code == 409
    assert httpx.get(f"{creem[0]}/checkout/{checkout_id}").status_code == 409


def test_pay_sends_the_three_signed_webhooks_creem_sends(creem, receiver):
    pay(creem, receiver)
    receiver.wait_for(3)
    assert sorted(receiver.types()) == [
        "checkout.completed",
        "subscription.active",
        "subscription.paid",
    ]
    for _type, body, signature in receiver.received:
        assert signature == sign(body, SECRET)


def test_a_delivery_that_is_not_answered_200_is_retried(creem, receiver):
    receiver.answers = [500, 500, 500]
    state, _checkout_id, _paid = pay(creem, receiver)
    receiver.wait_for(6)
    time.sleep(0.2)
    assert sorted(status for event in state.events for status in event.statuses) == (
        [200, 200, 200, 500, 500, 500]
    )


def test_renewals_cancellations_refunds_on_request(creem, receiver):
    url, _state = creem
    state, _checkout_id, _paid = pay(creem, receiver)
    receiver.wait_for(3)
    (subscription_id,) = state.subscriptions
    for action in (
        "renew",
        "cancel-scheduled",
        "resume",
        "refund",
        "dispute",
        "past-due",
        "cancel-immediate",
    ):
        response = httpx.post(f"{url}/stand-in/subscriptions/{subscription_id}/{action}")
        assert response.status_code == 200, (action, response.text)
    receiver.wait_for(10)
    assert set(receiver.types()[3:]) == {
        "subscription.paid",
        "subscription.scheduled_cancel",
        "subscription.update",
        "refund.created",
        "dispute.created",
        "subscription.past_due",
        "subscription.canceled",
    }
    refused = httpx.post(f"{url}/stand-in/subscriptions/{subscription_id}/resume")
    assert refused.status_code == 400
    unknown = httpx.post(f"{url}/stand-in/subscriptions/{subscription_id}/teleport")
    assert unknown.status_code == 404


def test_duplicates_and_out_of_order_sequences_on_request(creem, receiver):
    url, _state = creem
    assert httpx.post(f"{url}/stand-in/hold").json() == {"holding": True}
    state, _checkout_id, _paid = pay(creem, receiver)
    (subscription_id,) = state.subscriptions
    httpx.post(f"{url}/stand-in/subscriptions/{subscription_id}/expire")
    time.sleep(0.1)
    assert receiver.received == []
    released = httpx.post(f"{url}/stand-in/release?order=reversed").json()["released"]
    assert released == [event.id for event in reversed(state.events)]
    assert receiver.types() == [
        "subscription.expired",
        "subscription.paid",
        "subscription.active",
        "checkout.completed",
    ]
    first = state.events[0].id
    assert httpx.post(f"{url}/stand-in/events/{first}/redeliver?times=3").status_code == 200
    receiver.wait_for(7)
    assert receiver.types()[4:] == ["checkout.completed"] * 3
    assert httpx.post(f"{url}/stand-in/release?order=sideways").status_code == 400
    assert httpx.post(f"{url}/stand-in/events/{first}/redeliver?times=0").status_code == 400
    listed = httpx.get(f"{url}/stand-in/events").json()
    assert [event["id"] for event in listed] == [event.id for event in state.events]


def test_a_shuffled_release_is_a_seeded_permutation():
    state = CreemStandIn(API_KEY, SECRET, deliver=False)
    state.hold()
    checkout = state.create_checkout(
        {"product_id": "prod_standin_pro_yearly", "success_url": "http://app.test/return"}
    )
    state.pay(checkout.id)
    for action in ("renew", "past-due", "renew", "expire"):
        state.act(checkout.subscription_id, action)
    expected = list(state.events)
    random.Random(4).shuffle(expected)
    released = state.release("shuffled", seed=4)
    assert released == expected and released != state.events
    assert state.held == [] and not state.holding


def test_the_control_page_and_the_portal_render(creem, receiver):
    url, _state = creem
    state, _checkout_id, _paid = pay(creem, receiver)
    (subscription_id,) = state.subscriptions
    page = httpx.get(f"{url}/", headers={"accept": "text/html"})
    assert page.status_code == 200 and subscription_id in page.text
    assert "release shuffled" in page.text
    back = httpx.post(
        f"{url}/stand-in/subscriptions/{subscription_id}/renew", headers={"accept": "text/html"}
    )
    assert back.status_code == 303 and back.headers["location"] == "/"
    customer_id = state.subscription(subscription_id).customer_id
    portal = httpx.post(
        f"{url}/v1/customers/billing",
        headers={"x-api-key": API_KEY},
        json={"customer_id": customer_id},
    ).json()["customer_portal_link"]
    portal_page = httpx.get(portal)
    assert portal_page.status_code == 200 and "Back to the app" in portal_page.text
    assert httpx.get(f"{url}/portal/cust_nobody").status_code == 404


def test_cancel_on_the_checkout_page_goes_back_to_the_plans(creem, receiver):
    url, state = creem
    opened = open_checkout(url, f"{receiver.url}/dashboard/subscription/return")
    canceled = httpx.post(opened["checkout_url"] + "/cancel")
    assert canceled.status_code == 303
    assert canceled.headers["location"] == (
        f"{receiver.url}/dashboard/subscription?checkout=canceled"
    )
    assert state.checkouts[opened["id"]].status == "expired"


@pytest.mark.parametrize(
    "body, status",
    [
        ({"product_id": "prod_nope", "success_url": "https://app/"}, 404),
        ({"product_id": "prod_standin_pro_monthly", "success_url": "javascript:alert(1)"}, 400),
        (["not", "an", "object"], 400),
    ],
)
def test_bad_checkouts_are_refused(creem, body, status):
    url, _state = creem
    response = httpx.post(f"{url}/v1/checkouts", headers={"x-api-key": API_KEY}, json=body)
    assert response.status_code == status


def test_cancel_needs_a_known_mode(creem, receiver):
    url, _state = creem
    state, _checkout_id, _paid = pay(creem, receiver)
    (subscription_id,) = state.subscriptions
    response = httpx.post(
        f"{url}/v1/subscriptions/{subscription_id}/cancel",
        headers={"x-api-key": API_KEY},
        json={"mode": "later"},
    )
    assert response.status_code == 400


def paid_state() -> tuple[CreemStandIn, str]:
    state = CreemStandIn(API_KEY, SECRET, deliver=False)
    checkout = state.create_checkout(
        {
            "product_id": "prod_standin_pro_monthly",
            "success_url": "http://app.test/return",
            "metadata": {"user_id": "3"},
        }
    )
    state.pay(checkout.id)
    return state, checkout.subscription_id


def test_each_event_has_the_keys_of_creems_sample_for_its_type():
    state, subscription_id = paid_state()
    for action in ("renew", "cancel-scheduled", "resume", "past-due", "unpaid", "pause", "expire"):
        state.act(subscription_id, action)
    for event in state.events:
        if event.event_type.startswith("subscription."):
            assert set(event.payload["object"]) == set(sample(event.event_type)["object"]), (
                event.event_type
            )
    active = next(event for event in state.events if event.event_type == "subscription.active")
    assert "metadata" not in active.payload["object"]
    paid = next(event for event in state.events if event.event_type == "subscription.paid")
    assert paid.payload["object"]["metadata"] == {"user_id": "3"}


def test_an_immediate_cancel_keeps_the_real_period_end():
    state, subscription_id = paid_state()
    period_end = state.subscription(subscription_id).current_period_end
    state.act(subscription_id, "cancel-immediate")
    canceled = state.events[-1].payload["object"]
    assert canceled["status"] == "canceled" and canceled["canceled_at"] is not None
    assert canceled["current_period_end_date"] == iso(period_end)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_documented_sample_can_be_sent_about_a_stand_in_subscription(event_type):
    state, subscription_id = paid_state()
    stored = state.subscription(subscription_id)
    sent = state.send_sample(event_type, subscription_id)
    assert sent.event_type == event_type and sent.signature == sign(sent.body, SECRET)
    documented = sample(event_type)
    body = sent.payload
    assert body["id"] != documented["id"] and body["created_at"] >= documented["created_at"]
    assert set(body["object"]) == set(documented["object"])
    text = sent.body.decode()
    assert subscription_id in text and stored.customer_id in text
    assert ("metadata" in body["object"]) == ("metadata" in documented["object"])


def test_upgrade_switches_products_and_sends_update_then_paid(creem, receiver):
    url, _state = creem
    state, _checkout_id, _paid = pay(creem, receiver)
    receiver.wait_for(3)  # each event goes out on its own timer: the payment's land first
    (subscription_id,) = state.subscriptions
    answer = httpx.post(
        f"{url}/v1/subscriptions/{subscription_id}/upgrade",
        headers={"x-api-key": API_KEY},
        json={
            "product_id": "prod_standin_pro_yearly",
            "update_behavior": "proration-charge-immediately",
        },
    )
    assert answer.status_code == 200
    assert answer.json()["product"]["id"] == "prod_standin_pro_yearly"
    receiver.wait_for(5)
    assert sorted(receiver.types()[3:]) == ["subscription.paid", "subscription.update"]
    assert [event.event_type for event in state.events[3:]] == [
        "subscription.update",
        "subscription.paid",
    ]
    for body, status in (
        ({"product_id": "prod_standin_pro_yearly"}, 400),
        ({"product_id": "prod_nope"}, 404),
        ({"product_id": "prod_standin_pro_monthly", "update_behavior": "whenever"}, 400),
    ):
        refused = httpx.post(
            f"{url}/v1/subscriptions/{subscription_id}/upgrade",
            headers={"x-api-key": API_KEY},
            json=body,
        )
        assert refused.status_code == status, body


def test_the_control_page_sends_a_sample(creem, receiver):
    url, _state = creem
    state, _checkout_id, _paid = pay(creem, receiver)
    (subscription_id,) = state.subscriptions
    sent = httpx.post(
        f"{url}/stand-in/subscriptions/{subscription_id}/samples/subscription.expired"
    )
    assert sent.json()["type"] == "subscription.expired"
    receiver.wait_for(4)
    assert (
        httpx.post(
            f"{url}/stand-in/subscriptions/{subscription_id}/samples/nothing.happened"
        ).status_code
        == 404
    )
    page = httpx.get(f"{url}/", headers={"accept": "text/html"})
    assert "send sample" in page.text and "subscription.scheduled_cancel" in page.text
