"""CreemClient against the Creem stand-in, both talking real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from credit_app.billing.creem.client import Checkout, CreemClient
from credit_app.billing.creem.events import SubscriptionSnapshot, object_id, parse_timestamp
from credit_app.errors import CreemError
from credit_app.testing.creem import (
    CreemStandIn,
    create_stand_in_app,
    get_stand_in,
    serve_stand_in,
)

pytestmark = pytest.mark.no_db  # no database, no app

API_KEY = "creem_test_client_key"
MONTHLY = "prod_standin_pro_monthly"


@pytest.fixture
def stand_in() -> Iterator[tuple[str, CreemStandIn]]:
    app = create_stand_in_app(api_key=API_KEY, webhook_secret="whsec", deliver=False)
    with serve_stand_in(app) as url:
        yield url, get_stand_in(app)


@pytest.fixture
def client(stand_in) -> Iterator[CreemClient]:
    url, _state = stand_in
    with CreemClient(url, API_KEY, timeout=5, retry_backoff=0.01) as creem:
        yield creem


def checkout(creem: CreemClient, request_id: str = "req-1") -> Checkout:
    return creem.create_checkout(
        MONTHLY,
        request_id,
        "http://app.test/return?feature=video",
        customer_email="buyer@example.com",
        metadata={"user_id": "7"},
    )


def paid_subscription(creem: CreemClient, state: CreemStandIn) -> str:
    opened = checkout(creem, "req-paid")
    state.pay(opened.id)
    return state.checkouts[opened.id].subscription_id


def test_create_checkout_answers_a_typed_checkout(client, stand_in):
    url, state = stand_in
    opened = checkout(client)
    assert opened.checkout_url == f"{url}/checkout/{opened.id}" and opened.id.startswith("ch_")
    assert opened.status == "pending" and opened.product_id == MONTHLY
    assert opened.request_id == "req-1"
    stored = state.checkouts[opened.id]
    assert stored.metadata == {"user_id": "7"} and stored.customer_email == "buyer@example.com"


def test_the_same_request_id_gives_the_same_checkout(client, stand_in):
    assert checkout(client, "req-x").id == checkout(client, "req-x").id
    assert len(stand_in[1].checkouts) == 1


def test_get_subscription_reads_dates_and_expanded_references(client, stand_in):
    _url, state = stand_in
    subscription_id = paid_subscription(client, state)
    remote = client.get_subscription(subscription_id)
    stored = state.subscription(subscription_id)
    assert isinstance(remote, SubscriptionSnapshot) and remote.status == "active"
    assert remote.product_id == MONTHLY and remote.customer_id == stored.customer_id
    assert remote.period_end == stored.current_period_end.replace(
        microsecond=stored.current_period_end.microsecond // 1000 * 1000
    )
    assert remote.metadata == {"user_id": "7"} and remote.canceled_at is None
    assert remote.metadata_user_id == "7" and remote.subscription_id == subscription_id


def test_cancel_resume_and_the_portal(client, stand_in):
    _url, state = stand_in
    subscription_id = paid_subscription(client, state)
    assert client.cancel_subscription(subscription_id).status == "scheduled_cancel"
    assert client.resume_subscription(subscription_id).status == "active"
    assert client.cancel_subscription(subscription_id, "immediate").status == "canceled"
    link = client.customer_portal_url(state.subscription(subscription_id).customer_id)
    assert httpx.get(link).status_code == 200
    with pytest.raises(ValueError, match="mode"):
        client.cancel_subscription(subscription_id, "whenever")


@pytest.mark.parametrize(
    "call, status",
    [
        (lambda creem: creem.get_subscription("sub_missing"), 404),
        (lambda creem: creem.create_checkout("prod_missing", "r", "http://app.test/"), 404),
        (lambda creem: creem.resume_subscription("sub_missing"), 404),
        (lambda creem: creem.customer_portal_url("cust_missing"), 404),
    ],
)
def test_refusals_are_creem_errors_with_the_status(client, call, status):
    with pytest.raises(CreemError) as caught:
        call(client)
    assert caught.value.creem_status == status and caught.value.status == 502


def test_a_wrong_key_is_refused(stand_in):
    url, _state = stand_in
    with CreemClient(url, "creem_test_wrong") as creem, pytest.raises(CreemError) as caught:
        creem.get_subscription("sub_1")
    assert caught.value.creem_status == 403
    assert httpx.get(f"{url}/v1/subscriptions").status_code == 401


def test_idempotent_calls_are_retried_on_5xx(client, stand_in):
    _url, state = stand_in
    subscription_id = paid_subscription(client, state)
    state.fail_next_requests = 2
    assert client.get_subscription(subscription_id).subscription_id == subscription_id
    assert [status for _m, _p, status in state.requests[-3:]] == [503, 503, 0]
    state.fail_next_requests = 1
    assert checkout(client, "req-retried").id in state.checkouts
    assert (
        sum(1 for checkout in state.checkouts.values() if checkout.request_id == "req-retried") == 1
    )


def test_upgrade_moves_the_subscription_to_another_product(client, stand_in):
    _url, state = stand_in
    subscription_id = paid_subscription(client, state)
    switched = client.upgrade_subscription(subscription_id, "prod_standin_pro_yearly")
    assert switched.product_id == "prod_standin_pro_yearly" and switched.status == "active"
    assert state.requests[-1][:2] == ("POST", f"/v1/subscriptions/{subscription_id}/upgrade")
    with pytest.raises(CreemError) as caught:
        client.upgrade_subscription(subscription_id, "prod_standin_pro_yearly")
    assert caught.value.creem_status == 400
    with pytest.raises(ValueError, match="update_behavior"):
        client.upgrade_subscription(subscription_id, MONTHLY, "free-of-charge")


def test_a_cancel_is_never_sent_twice(client, stand_in):
    _url, state = stand_in
    subscription_id = paid_subscription(client, state)
    before = len(state.requests)
    state.fail_next_requests = 1
    with pytest.raises(CreemError) as caught:
        client.cancel_subscription(subscription_id)
    assert caught.value.creem_status == 503 and len(state.requests) == before + 1
    assert state.subscription(subscription_id).status == "active"


def test_retries_stop_after_max_retries(stand_in):
    url, state = stand_in
    state.fail_next_requests = 10
    with (
        CreemClient(url, API_KEY, max_retries=2, retry_backoff=0.01) as creem,
        pytest.raises(CreemError),
    ):
        creem.get_subscription("sub_1")
    assert len(state.requests) == 3


def test_retries_stop_at_the_total_budget(stand_in):
    url, state = stand_in
    state.fail_next_requests = 10
    with (
        CreemClient(url, API_KEY, retry_backoff=1.0, total_timeout=0.5) as creem,
        pytest.raises(CreemError),
    ):
        creem.get_subscription("sub_1")
    assert len(state.requests) == 1


def test_an_unreachable_api_is_a_creem_error():
    with (
        CreemClient("http://127.0.0.1:9", API_KEY, retry_backoff=0.01) as creem,
        pytest.raises(CreemError, match="could not be reached"),
    ):
        creem.get_subscription("sub_1")


def test_retry_after_is_honoured_but_capped(client):
    deadline = float("inf")
    assert client._retry_delay(0, 4, "2", deadline) == 2.0
    assert client._retry_delay(0, 4, "3600", deadline) == 10.0
    assert client._retry_delay(0, 4, "soon", deadline) == 0.01
    assert client._retry_delay(3, 4, None, deadline) is None


@pytest.mark.parametrize(
    "body",
    [
        b"<html>",
        b"[1]",
        b'{"id": 1}',
        b'{"id": "sub", "status": 2}',
        b'{"id": "sub", "status": "active", "updated_at": "later"}',
    ],
)
def test_answers_that_are_not_what_was_asked_are_creem_errors(body):
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    with httpx.Client(transport=transport) as http:
        creem = CreemClient("https://test-api.creem.io", API_KEY, http_client=http)
        with pytest.raises(CreemError):
            creem.get_subscription("sub_1")
        with pytest.raises(CreemError):
            creem.customer_portal_url("cust_1")
        with pytest.raises(CreemError):
            creem.create_checkout(MONTHLY, "r", "https://app/")


def test_construction_is_checked():
    with pytest.raises(ValueError, match="base_url"):
        CreemClient("ftp://creem", API_KEY)
    with pytest.raises(ValueError, match="api_key"):
        CreemClient("https://api.creem.io", "")
    with pytest.raises(ValueError, match="positive"):
        CreemClient("https://api.creem.io", API_KEY, timeout=0)


def test_from_config():
    with CreemClient.from_config(
        {"CREEM_API_URL": "https://api.creem.io/", "CREEM_API_KEY": "k", "CREEM_TIMEOUT_SECONDS": 3}
    ) as creem:
        assert creem.base_url == "https://api.creem.io" and creem.timeout == 3.0


def test_timestamps_and_references():
    assert parse_timestamp(1728734325927) == datetime(2024, 10, 12, 11, 58, 45, 927000, tzinfo=UTC)
    assert parse_timestamp("2024-10-12T11:58:45.425Z") == datetime(
        2024, 10, 12, 11, 58, 45, 425000, tzinfo=UTC
    )
    assert parse_timestamp(None) is None and parse_timestamp("") is None
    for bad in ("2024-10-12T11:58:45", True, [1]):
        with pytest.raises(ValueError):
            parse_timestamp(bad)
    assert object_id({"id": "prod_1"}) == object_id("prod_1") == "prod_1"
    assert object_id({}) is None and object_id(5) is None
