"""The billing pages and the webhook endpoint: signatures, storage and the job, the checkout
round trip through the stand-in back to the feature, cancel, resume and the billing portal."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from rq import SimpleWorker
from sqlalchemy import func, select

from credit_app.billing import subscriptions
from credit_app.billing.creem.events import MAX_WEBHOOK_BYTES, redirect_signature
from credit_app.billing.creem.events import sign_body as sign
from credit_app.models import Subscription, WebhookEvent
from credit_app.platform.extensions import db
from credit_app.platform.redis_client import get_redis
from credit_app.services import credits
from credit_app.testing.creem import (
    OTHER_PRODUCT_ID,
    encode,
)
from credit_app.web.blueprints.billing import PENDING_CHECKOUT_KEY
from tests.creem_support import WEBHOOK_URL, make_stand_in, post_event, served_stand_in, subscribe

pytestmark = pytest.mark.usefixtures("webhooks_queue")


@pytest.fixture
def creem(app, monkeypatch):
    """The stand-in served over HTTP on 127.0.0.1, and the app pointed at it."""
    with served_stand_in(app, monkeypatch) as stand_in:
        yield stand_in


def stored_count(event_id: str) -> int:
    return db.session.execute(
        select(func.count()).select_from(WebhookEvent).where(WebhookEvent.event_id == event_id)
    ).scalar_one()


def deliver_all(client, stand_in, queue) -> None:
    for event in stand_in.events:
        assert post_event(client, event).status_code == 200
    SimpleWorker([queue], connection=get_redis()).work(burst=True)


def page(response) -> str:
    return response.get_data(as_text=True)


def make_pro(client, stand_in, user, queue):
    subscription, _events = subscribe(stand_in, user)
    deliver_all(client, stand_in, queue)
    assert credits.get_user_credits(user.id).unlimited
    return subscription


class TestWebhookEndpoint:
    @pytest.fixture
    def event(self, app, user):
        stand_in = make_stand_in(app)
        _sub, events = subscribe(stand_in, user)
        stand_in.close()
        return events[-1]

    def test_a_signed_event_is_stored_and_queued_after_commit(self, client, event, webhooks_queue):
        response = post_event(client, event)
        assert response.status_code == 200
        assert response.get_json() == {"received": True, "duplicate": False}
        row = db.session.execute(
            select(WebhookEvent).where(WebhookEvent.event_id == event.id)
        ).scalar_one()
        assert row.event_type == "subscription.paid" and row.payload == event.payload
        assert row.attempts == 0 and row.processed_at is None
        assert int(row.event_created_at.timestamp() * 1000) == event.created_at
        (job,) = webhooks_queue.get_jobs()
        assert job.func_name == "credit_app.jobs.webhooks.process_webhook_event"
        assert job.args == (event.id,)

    def test_a_replay_is_stored_once_and_adds_no_job(self, client, event, webhooks_queue):
        post_event(client, event)
        for _ in range(5):
            again = post_event(client, event)
            assert again.status_code == 200 and again.get_json()["duplicate"] is True
        assert stored_count(event.id) == 1 and webhooks_queue.count == 1
        SimpleWorker([webhooks_queue], connection=get_redis()).work(burst=True)
        db.session.expire_all()
        row = db.session.execute(
            select(WebhookEvent).where(WebhookEvent.event_id == event.id)
        ).scalar_one()
        assert row.processed_at is not None and row.attempts == 1
        assert post_event(client, event).status_code == 200
        assert webhooks_queue.count == 0

    @pytest.mark.parametrize(
        "case",
        [
            "wrong secret",
            "altered body",
            "missing header",
            "signature of another body",
            "empty signature",
        ],
    )
    def test_a_bad_signature_is_401_and_stores_nothing(self, client, event, webhooks_queue, case):
        body = event.body
        headers = {"content-type": "application/json"}
        if case == "wrong secret":
            headers["creem-signature"] = sign(body, "whsec_guess")
        elif case == "altered body":
            headers["creem-signature"] = event.signature
            body = body.replace(b'"active"', b'"trialing"')
        elif case == "signature of another body":
            other = encode({**event.payload, "id": "evt_other"})
            headers["creem-signature"] = sign(
                other, client.application.config["CREEM_WEBHOOK_SECRET"]
            )
        elif case == "empty signature":
            headers["creem-signature"] = ""
        response = client.post(WEBHOOK_URL, data=body, headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "invalid_signature"
        assert stored_count(event.id) == 0 and webhooks_queue.count == 0

    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            b"[1, 2]",
            b'{"id": "evt_x"}',
            b'{"id": "evt_x", "eventType": "a", "created_at": -1, "object": {}}',
        ],
    )
    def test_a_signed_body_that_is_not_an_event_is_422(self, client, webhooks_queue, body):
        secret = client.application.config["CREEM_WEBHOOK_SECRET"]
        response = client.post(
            WEBHOOK_URL, data=body, headers={"creem-signature": sign(body, secret)}
        )
        assert response.status_code == 422
        assert response.get_json()["error"]["code"] == "invalid_webhook_payload"
        assert stored_count("evt_x") == 0 and webhooks_queue.count == 0

    def test_an_oversized_body_is_413_unread_and_stores_nothing(
        self, client, event, webhooks_queue
    ):
        huge = encode({**event.payload, "padding": "x" * MAX_WEBHOOK_BYTES})
        response = client.post(
            WEBHOOK_URL,
            data=huge,
            headers={
                "content-type": "application/json",
                "creem-signature": sign(huge, client.application.config["CREEM_WEBHOOK_SECRET"]),
            },
        )
        assert response.status_code == 413
        assert response.get_json()["error"]["code"] == "payload_too_large"
        assert stored_count(event.id) == 0 and webhooks_queue.count == 0

    def test_an_oversized_body_without_a_length_is_413_too(self, app, event, webhooks_queue):
        huge = encode({**event.payload, "padding": "x" * MAX_WEBHOOK_BYTES})
        response = app.test_client().post(
            WEBHOOK_URL,
            data=huge,
            headers={
                "content-type": "application/json",
                "creem-signature": sign(huge, app.config["CREEM_WEBHOOK_SECRET"]),
            },
            environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
        )
        assert response.status_code == 413 and stored_count(event.id) == 0

    def test_a_body_at_the_cap_is_accepted(self, client, event):
        padded = {**event.payload, "padding": ""}
        padded["padding"] = "x" * (MAX_WEBHOOK_BYTES - len(encode(padded)))
        assert len(encode(padded)) == MAX_WEBHOOK_BYTES
        assert post_event(client, padded).status_code == 200

    def test_a_created_at_a_year_ahead_is_stored_clamped_to_its_arrival(self, client, event):
        ahead = {
            **event.payload,
            "id": "evt_from_the_future",
            "created_at": int(time.time() * 1000) + 365 * 86_400_000,
        }
        before = datetime.now(UTC)
        assert post_event(client, ahead).status_code == 200
        row = db.session.execute(
            select(WebhookEvent).where(WebhookEvent.event_id == "evt_from_the_future")
        ).scalar_one()
        assert row.created_at_clamped and row.created_at_raw_ms == ahead["created_at"]
        assert before - timedelta(seconds=1) <= row.event_created_at <= datetime.now(UTC)

    def test_the_snapshot_is_stored_in_columns_on_receipt(self, client, event):
        post_event(client, event)
        row = db.session.execute(
            select(WebhookEvent).where(WebhookEvent.event_id == event.id)
        ).scalar_one()
        obj = event.payload["object"]
        assert (row.creem_subscription_id, row.subscription_status, row.product_id) == (
            obj["id"],
            "active",
            obj["product"]["id"],
        )
        assert row.creem_customer_id == obj["customer"]["id"]
        assert row.metadata_user_id == obj["metadata"]["user_id"]
        assert row.period_end.isoformat().startswith(obj["current_period_end_date"][:19])

    def test_the_endpoint_needs_no_csrf_token_or_session(self, app, client, event, monkeypatch):
        monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
        assert post_event(client, event).status_code == 200

    def test_only_post(self, client):
        assert client.get(WEBHOOK_URL).status_code == 405


class TestSubscriptionPage:
    def test_a_free_user_sees_the_plans_and_their_credits(self, user_client):
        text = page(user_client.get("/dashboard/subscription"))
        price = '{}</span> <span class="plan-interval">per {}'
        assert "Pro monthly" in text and price.format("$19", "month") in text
        assert "Pro yearly" in text and price.format("$190", "year") in text
        assert "Save $38 (16%)" in text and "Recommended" in text
        assert "6 of 6 credits left" in text and "Cancel subscription" not in text
        assert "Choose Pro monthly" in text and "Choose Pro yearly" in text
        free_card = text.split('id="plan-free-name"')[1].split("</li>")[0]
        assert "Your plan" in free_card
        assert "What each plan includes" in text

    def test_the_upgrade_modal_click_is_recorded_and_the_feature_kept(
        self, user_client, monkeypatch
    ):
        from credit_app.services import analytics

        calls = []
        monkeypatch.setattr(
            analytics, "track", lambda event, user_id, **kw: calls.append((event, kw))
        )
        text = page(user_client.get("/dashboard/subscription?feature=video&source=upgrade_modal"))
        assert calls == [("upgrade_clicked", {"feature": "video"})]
        assert "Generate a video" in text
        assert 'name="feature" value="video"' in text

    def test_a_canceled_checkout_says_nothing_was_charged(self, user_client):
        text = page(user_client.get("/dashboard/subscription?checkout=canceled"))
        assert "nothing was charged" in text

    def test_a_pro_user_sees_renewal_cancel_and_billing(
        self, app, creem, user, user_client, webhooks_queue
    ):
        make_pro(user_client, creem, user, webhooks_queue)
        text = page(user_client.get("/dashboard/subscription"))
        assert "<strong>Pro</strong>" in text and "renews on" in text
        assert "Cancel subscription" in text and "Manage billing" in text
        assert "Choose Pro monthly" not in text and "Choose Pro yearly" not in text
        assert "/dashboard/subscription/checkout" not in text, "a checkout that would be a 409"
        assert "credits left" not in text
        monthly_card = text.split('id="plan-pro_monthly-name"')[1].split("</li>")[0]
        assert "Your plan" in monthly_card and "Recommended" not in monthly_card
        assert "Switch to Pro yearly" in text
        assert "Unlimited" in page(user_client.get("/dashboard/credits"))

    def test_htmx_gets_the_plan_part_that_the_live_counter_reloads(
        self, creem, user, user_client, webhooks_queue
    ):
        before = user_client.get("/dashboard/subscription", headers={"HX-Request": "true"})
        assert before.status_code == 200 and "HX-Request" in before.headers["Vary"]
        fragment = before.get_data(as_text=True)
        assert "<html" not in fragment
        assert 'id="subscription-state" data-plan="free"' in fragment
        assert 'hx-trigger="plan-changed from:body"' in fragment
        make_pro(user_client, creem, user, webhooks_queue)
        after = user_client.get("/dashboard/subscription", headers={"HX-Request": "true"}).get_data(
            as_text=True
        )
        assert 'data-plan="pro"' in after and "Choose Pro" not in after
        assert "<strong>Pro</strong>: unlimited generations" in after


class TestCheckout:
    def test_choosing_a_plan_goes_to_creems_checkout(self, creem, user_client):
        response = user_client.post(
            "/dashboard/subscription/checkout", data={"plan": "pro_monthly", "feature": "furnish"}
        )
        assert response.status_code == 303
        (checkout,) = creem.checkouts.values()
        assert response.headers["Location"].endswith(f"/checkout/{checkout.id}")
        assert checkout.metadata["feature"] == "furnish"

    def test_an_unknown_plan_is_refused_on_the_page(self, creem, user_client):
        response = user_client.post(
            "/dashboard/subscription/checkout", data={"plan": "pro_lifetime"}
        )
        assert response.status_code == 422
        assert "Unknown plan" in page(response) and creem.checkouts == {}

    def test_a_pro_user_cannot_check_out_again(self, creem, user, user_client, webhooks_queue):
        make_pro(user_client, creem, user, webhooks_queue)
        response = user_client.post("/dashboard/subscription/checkout", data={"plan": "pro_yearly"})
        assert response.status_code == 409 and "already have Pro" in page(response)

    def test_creem_down_is_a_clear_502(self, app, user_client, monkeypatch):
        monkeypatch.setitem(app.config, "CREEM_API_URL", "http://127.0.0.1:9")
        monkeypatch.setitem(app.config, "CREEM_TIMEOUT_SECONDS", 1)
        response = user_client.post(
            "/dashboard/subscription/checkout", data={"plan": "pro_monthly"}
        )
        assert response.status_code == 502
        assert "payment provider could not be reached" in page(response)

    def test_the_whole_round_trip_back_to_the_feature(
        self, creem, user, user_client, webhooks_queue
    ):
        started = user_client.post(
            "/dashboard/subscription/checkout", data={"plan": "pro_monthly", "feature": "interior"}
        )
        checkout_url = started.headers["Location"]
        with httpx.Client() as browser:
            checkout_page = browser.get(checkout_url)
            assert checkout_page.status_code == 200 and ">Pay<" in checkout_page.text
            paid = browser.post(checkout_url + "/pay", data={"email": user.email})
        assert paid.status_code == 303
        back = urlsplit(paid.headers["Location"])
        assert back.path == "/dashboard/subscription/return"

        returned = user_client.get(f"{back.path}?{back.query}")
        assert returned.status_code == 303
        assert returned.headers["Location"].endswith("/dashboard/redecorate-room?checkout=success")
        feature_page = page(user_client.get("/dashboard/redecorate-room?checkout=success"))
        assert "Payment received, thank you! You are back at Redecorate a room." in feature_page
        assert "Confirming your payment…" in feature_page
        assert 'data-state="confirming"' in feature_page
        assert "/dashboard/subscription/confirmation?on=feature" in feature_page
        polled = page(user_client.get("/dashboard/subscription/confirmation?on=feature"))
        assert 'data-state="confirming"' in polled and 'hx-trigger="every 2s"' in polled

        deliver_all(user_client, creem, webhooks_queue)
        welcome = page(user_client.get("/dashboard/subscription/confirmation?on=feature"))
        assert "Welcome to Pro!" in welcome
        assert 'id="sidebar-credits"' in welcome and 'hx-swap-oob="true"' in welcome
        assert "Unlimited" in welcome
        assert '<span data-text="cost-interior">Unlimited on Pro</span>' in welcome
        once = page(user_client.get("/dashboard/subscription/confirmation"))
        assert "Welcome to Pro" not in once and "hx-get" not in once
        again = page(user_client.get("/dashboard/redecorate-room?checkout=success"))
        assert "Welcome to Pro" not in again and "Confirming" not in again
        assert "Unlimited" in again and "credits remaining" not in again

    def test_the_webhook_before_the_redirect_welcomes_at_once(
        self, creem, user, user_client, webhooks_queue
    ):
        user_client.post(
            "/dashboard/subscription/checkout", data={"plan": "pro_yearly", "feature": "video"}
        )
        (checkout,) = creem.checkouts.values()
        back = urlsplit(creem.pay(checkout.id))
        deliver_all(user_client, creem, webhooks_queue)
        returned = user_client.get(f"{back.path}?{back.query}")
        assert returned.headers["Location"].endswith("/dashboard/generate-videos?checkout=success")
        text = page(user_client.get("/dashboard/generate-videos?checkout=success"))
        assert "Welcome to Pro!" in text and "Confirming" not in text

    def test_a_return_without_a_feature_lands_on_the_subscription_page(
        self, creem, user, user_client
    ):
        user_client.post(
            "/dashboard/subscription/checkout", data={"plan": "pro_monthly", "feature": "nonsense"}
        )
        (checkout,) = creem.checkouts.values()
        back = urlsplit(creem.pay(checkout.id))
        returned = user_client.get(f"{back.path}?{back.query}")
        assert returned.headers["Location"].endswith("/dashboard/subscription?checkout=success")
        text = page(user_client.get("/dashboard/subscription?checkout=success"))
        assert "Confirming your payment…" in text
        assert 'hx-get="/dashboard/subscription/confirmation"' in text

    def test_an_unsigned_return_is_not_taken_for_a_payment(self, user_client):
        returned = user_client.get(
            "/dashboard/subscription/return?feature=interior&checkout_id=ch_1&signature=forged"
        )
        assert returned.headers["Location"].endswith("/dashboard/redecorate-room")
        text = page(user_client.get("/dashboard/redecorate-room?checkout=success"))
        assert "Payment received" not in text and "Confirming" not in text

    def test_someone_elses_signed_return_url_is_not_their_payment(
        self, creem, user, user_client, make_user, app
    ):
        user_client.post(
            "/dashboard/subscription/checkout", data={"plan": "pro_monthly", "feature": "interior"}
        )
        (checkout,) = creem.checkouts.values()
        back = urlsplit(creem.pay(checkout.id))
        stranger = app.test_client(user=make_user())
        returned = stranger.get(f"{back.path}?{back.query}")
        assert returned.headers["Location"].endswith("/dashboard/redecorate-room")
        text = page(stranger.get("/dashboard/redecorate-room?checkout=success"))
        assert "Payment received" not in text and "Confirming" not in text
        own = user_client.get(f"{back.path}?{back.query}")
        assert own.headers["Location"].endswith("/dashboard/redecorate-room?checkout=success")

    def test_a_return_with_another_checkout_of_the_same_request_is_refused(
        self, creem, user, user_client
    ):
        user_client.post("/dashboard/subscription/checkout", data={"plan": "pro_monthly"})
        (checkout,) = creem.checkouts.values()
        params = [("checkout_id", "ch_someone_else"), ("request_id", checkout.request_id)]
        params.append(("signature", redirect_signature(params, creem.api_key)))
        returned = user_client.get("/dashboard/subscription/return?" + urlencode(params))
        assert returned.headers["Location"].endswith("/dashboard/subscription")

    def test_a_slow_confirmation_says_so_and_polls_less(self, user_client):
        with user_client.session_transaction() as session:
            session[PENDING_CHECKOUT_KEY] = {"at": time.time() - 120, "checkout_id": "ch_1"}
        text = page(user_client.get("/dashboard/subscription/confirmation"))
        assert "taking longer than usual" in text and 'hx-trigger="every 10s"' in text


class TestPlanSwitch:
    def test_the_page_says_what_changes_and_when_then_switches(
        self, creem, user, user_client, webhooks_queue
    ):
        subscription = make_pro(user_client, creem, user, webhooks_queue)
        text = page(user_client.get("/dashboard/subscription"))
        assert "Switch to Pro yearly" in text
        asked = page(user_client.get("/dashboard/subscription?confirm=switch"))
        assert 'id="switch-heading"' in asked and "Switch to Pro yearly?" in asked
        assert "today" in asked and "$190 / year" in asked
        done = user_client.post("/dashboard/subscription/switch", data={"plan": "pro_yearly"})
        assert done.status_code == 303
        assert creem.subscription(subscription.id).product.id == "prod_standin_pro_yearly"
        after = page(user_client.get("/dashboard/subscription"))
        assert "You are on Pro yearly now." in after and "Switch to Pro monthly" in after
        assert credits.get_user_credits(user.id).unlimited

    def test_switching_to_the_plan_one_has_is_refused_on_the_page(
        self, creem, user, user_client, webhooks_queue
    ):
        make_pro(user_client, creem, user, webhooks_queue)
        response = user_client.post("/dashboard/subscription/switch", data={"plan": "pro_monthly"})
        assert response.status_code == 409 and "flash-error" in page(response)
        assert (
            user_client.post("/dashboard/subscription/switch", data={"plan": "gold"}).status_code
            == 422
        )

    def test_a_free_user_has_nothing_to_switch(self, user_client):
        assert "Switch to" not in page(user_client.get("/dashboard/subscription"))
        response = user_client.post("/dashboard/subscription/switch", data={"plan": "pro_yearly"})
        assert response.status_code == 404


class TestManage:
    def test_cancel_asks_first_then_keeps_pro_until_the_period_end(
        self, creem, user, user_client, webhooks_queue
    ):
        subscription = make_pro(user_client, creem, user, webhooks_queue)
        confirm = page(user_client.get("/dashboard/subscription?confirm=cancel"))
        assert "Cancel Pro?" in confirm and "Yes, cancel" in confirm and "Keep Pro" in confirm
        response = user_client.post("/dashboard/subscription/cancel")
        assert response.status_code == 303
        assert creem.subscription(subscription.id).status == "scheduled_cancel"
        text = page(user_client.get("/dashboard/subscription"))
        assert "Your subscription is canceled. You keep Pro until" in text
        assert "you keep Pro until" in text and "Resume subscription" in text
        assert credits.get_user_credits(user.id).unlimited

        resumed = user_client.post("/dashboard/subscription/resume")
        assert resumed.status_code == 303
        assert creem.subscription(subscription.id).status == "active"
        text = page(user_client.get("/dashboard/subscription"))
        assert "running again" in text and "renews on" in text

    def test_after_the_period_end_a_canceled_subscription_reads_canceled(
        self, creem, user, user_client, webhooks_queue
    ):
        subscription = make_pro(user_client, creem, user, webhooks_queue)
        assert user_client.post("/dashboard/subscription/cancel").status_code == 303
        ends = db.session.execute(
            select(Subscription.access_ends_at).where(
                Subscription.creem_subscription_id == subscription.id
            )
        ).scalar_one()
        assert subscriptions.downgrade_lapsed(now=ends + timedelta(seconds=1)) == [user.id]
        db.session.commit()
        text = page(user_client.get("/dashboard/subscription"))
        ended = f'<time datetime="{ends.isoformat()}">{ends:%d %B %Y}</time>'
        assert f"Canceled, ended {ended}." in text
        assert "Scheduled cancel" not in text and "Resume subscription" not in text
        assert "<strong>Free</strong>" in text and "Choose Pro monthly" in text

    def test_cancel_and_resume_without_a_subscription_are_refused_on_the_page(self, user_client):
        for action in ("cancel", "resume", "portal"):
            response = user_client.post(f"/dashboard/subscription/{action}")
            assert response.status_code == 404
            assert "flash-error" in page(response)

    def test_manage_billing_opens_creems_portal(self, creem, user, user_client, webhooks_queue):
        subscription = make_pro(user_client, creem, user, webhooks_queue)
        response = user_client.post("/dashboard/subscription/portal")
        assert response.status_code == 303
        assert response.headers["Location"].endswith(f"/portal/{subscription.customer_id}")
        with httpx.Client() as browser:
            portal = browser.get(response.headers["Location"])
        assert portal.status_code == 200 and subscription.id in portal.text

    def test_a_refunded_subscription_shows_the_flag(self, creem, user, user_client, webhooks_queue):
        subscription = make_pro(user_client, creem, user, webhooks_queue)
        creem.act(subscription.id, "refund")
        deliver_all(user_client, creem, webhooks_queue)
        text = page(user_client.get("/dashboard/subscription"))
        assert "switched off after a refund" in text and "Cancel subscription" not in text
        assert "Choose Pro monthly" in text


class TestForeignProducts:
    def test_another_product_gives_no_pro_and_admins_see_it(
        self, creem, user, user_client, admin_client, webhooks_queue
    ):
        subscription, _events = subscribe(creem, user, product_id=OTHER_PRODUCT_ID)
        deliver_all(user_client, creem, webhooks_queue)
        assert not credits.get_user_credits(user.id).unlimited
        outcomes = (
            db.session.execute(
                select(WebhookEvent.outcome).where(
                    WebhookEvent.creem_subscription_id == subscription.id
                )
            )
            .scalars()
            .all()
        )
        assert outcomes == ["foreign_product"] * 3
        assert "Go Pro" in page(user_client.get("/dashboard/subscription"))
        admin_page = page(admin_client.get(f"/admin/users/{user.id}"))
        assert subscription.id in admin_page and "not a Pro plan, gives no Pro" in admin_page
        assert OTHER_PRODUCT_ID in admin_page

    def test_the_foreign_command_lists_them(self, app, creem, user, user_client, webhooks_queue):
        subscription, _events = subscribe(creem, user, product_id=OTHER_PRODUCT_ID)
        deliver_all(user_client, creem, webhooks_queue)
        listed = app.test_cli_runner().invoke(args=["billing", "foreign"]).output
        assert subscription.id in listed and OTHER_PRODUCT_ID in listed
