"""Issue 14 part A on the server: one source for every credit text, results waited for by
push instead of a fixed poll, the history one row per generation, and the upload errors
under the field."""

from __future__ import annotations

import re

import pytest

from credit_app.billing.plans import Plan, yearly_saving
from credit_app.generation.options import describe_options
from credit_app.jobs.generations import run_generation
from credit_app.platform.extensions import db
from credit_app.services import accounts, credits
from tests.blueprints.test_generations import only_generation, photo, start
from tests.conftest import PASSWORD


@pytest.fixture(autouse=True)
def local_generations(app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "GENERATION_STORAGE_PATH", tmp_path / "generations")
    monkeypatch.setitem(app.config, "GENERATION_PROVIDER", "local")


def texts_in(fragment: str) -> dict[str, str]:
    """The texts the counter fragment carries for the page, by name."""
    (template,) = re.findall(r"<template data-credit-texts>(.*?)</template>", fragment, re.S)
    return dict(re.findall(r'<span data-text="([\w-]+)">(.*?)</span>\n', template + "\n", re.S))


def page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


class TestOneSourceForCreditTexts:
    def test_the_counter_fragment_carries_every_text_of_the_page(self, user_client, user):
        credits.consume_credit(user.id, "interior")
        db.session.commit()
        texts = texts_in(page(user_client, "/dashboard/credits"))
        assert "5/6" in texts["short"]
        assert texts["summary"] == "You have 5 of 6 credits. Each generation uses one."
        assert texts["plan"].startswith("<strong>Free</strong>: 5 of 6 credits left.")
        assert texts["cost-interior"] == "Uses 1 credit · 5 left"
        assert {
            f"cost-{key}" for key in ("exterior", "sketch", "furnish", "remove", "video")
        } <= set(texts)

    def test_pages_render_the_same_texts_where_the_push_copies_them(self, user_client):
        home = page(user_client, "/dashboard")
        assert 'data-live-text="summary">You have 6 of 6 credits. Each generation uses one.' in home
        assert 'class="topbar-credits"' in home and 'data-live-text="short"' in home
        feature = page(user_client, "/dashboard/redecorate-room")
        assert 'data-live-text="cost-interior">Uses 1 credit · 6 left</span>' in feature
        subscription = page(user_client, "/dashboard/subscription")
        assert '<p data-live-text="plan"><strong>Free</strong>: 6 of 6 credits left.' in (
            subscription
        )

    def test_at_zero_credits_nothing_says_uses_one_credit(self, user_client, user):
        for _ in range(6):
            credits.consume_credit(user.id, "interior")
        db.session.commit()
        feature = page(user_client, "/dashboard/redecorate-room")
        assert "Uses 1 credit" not in feature
        assert "No credits left: Pro makes every tool unlimited" in feature
        assert "You have used all 6 free credits." in page(user_client, "/dashboard")

    def test_pro_texts_say_unlimited_everywhere(self, app, make_user):
        client = app.test_client(user=make_user(plan="pro"))
        texts = texts_in(page(client, "/dashboard/credits"))
        assert texts["summary"].startswith("You are on Pro")
        assert texts["cost-video"] == "Unlimited on Pro"
        assert texts["plan"].startswith("<strong>Pro</strong>")
        assert "credits left" not in page(client, "/dashboard/subscription")


class TestResultsByPush:
    def test_a_pending_generation_waits_for_a_push_not_a_timer(self, user_client, user):
        text = start(user_client, "interior").get_data(as_text=True)
        assert "data-generation-pending" in text and 'hx-trigger="generation-check"' in text
        assert "delay:" not in text and "every " not in text
        assert "Waiting for a free worker" not in text
        assert "Your design starts in a moment" in text
        generation = only_generation(user)
        assert run_generation(generation.id) == "succeeded"
        done = user_client.get(
            f"/dashboard/generations/{generation.id}", headers={"HX-Request": "true"}
        ).get_data(as_text=True)
        assert "data-generation-pending" not in done and "Done!" in done

    def test_the_result_page_names_the_options_as_the_form_did(self, user_client, user):
        start(user_client, "interior", style="coastal")
        generation = only_generation(user)
        text = page(user_client, f"/dashboard/generations/{generation.id}")
        assert "Living room · Coastal style · “warm light”" in text
        assert "living room" not in text.replace("Living room", "")


def test_describe_options_reads_like_the_form():
    assert describe_options("video", {"motion": "pan_left"}) == ["Pan left"]
    assert describe_options("remove", {"mask": [1, 2, 3, 4]}) == []
    assert describe_options("exterior", {"style": "farmhouse", "prompt": ""}) == ["Farmhouse style"]


class TestHistory:
    def test_one_row_per_generation(self, user_client, user):
        start(user_client, "interior", generation_id="gen-a")
        pending = credits.get_activity(user.id)
        assert [row.outcome for row in pending.items] == ["pending", "other"]
        assert pending.items[0].change == -1
        run_generation(only_generation(user).id)
        db.session.commit()
        done = credits.get_activity(user.id)
        assert [(row.outcome, row.change) for row in done.items] == [("done", -1), ("other", 6)]
        home = page(user_client, "/dashboard")
        assert "credit held" not in home and "finished" not in home
        assert home.count('data-outcome="done"') == 1

    def test_a_returned_credit_nets_to_zero(self, user_client, user):
        start(user_client, "interior")
        generation = only_generation(user)
        credits.release_reservation(generation.reservation_id)
        db.session.commit()
        rows = credits.get_activity(user.id).items
        assert [(row.outcome, row.change) for row in rows] == [("returned", 0), ("other", 6)]
        assert "did not finish, credit returned" in page(user_client, "/dashboard")

    def test_pro_generations_are_not_shown_as_zero_credit_holds(self, app, make_user):
        pro = make_user(plan="pro")
        client = app.test_client(user=pro)
        start(client, "interior")
        run_generation(only_generation(pro).id)
        db.session.commit()
        (row, *_) = credits.get_activity(pro.id).items
        assert (row.outcome, row.unlimited) == ("done", True)
        home = page(client, "/dashboard")
        assert "Pro, free" in home and "credit held 0" not in home


class TestUploads:
    def test_a_too_large_upload_is_answered_under_the_field(
        self, app, user_client, user, monkeypatch
    ):
        monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 20_000)
        big = photo(size=(1200, 1200), image_format="BMP")
        response = start(user_client, "interior", image=big)
        text = response.get_data(as_text=True)
        assert response.status_code == 413
        assert response.headers["HX-Retarget"] == "#image-error"
        assert 'id="image-error" role="alert"' in text and "up to 10 MB" in text
        assert "capacity limit" not in text
        assert credits.get_user_credits(user.id).remaining == 6

    def test_the_form_tells_the_browser_the_limit(self, user_client):
        form = page(user_client, "/dashboard/remove-object")
        assert f'data-max-bytes="{10 * 1024 * 1024}"' in form
        assert 'aria-describedby="image-hint image-error"' in form
        assert 'id="image-preview" alt="Preview of your photo: drag across it' in form


def test_sign_up_reports_every_problem_at_once(client, make_user):
    taken = make_user()
    response = client.post(
        "/signup", data={"email": taken.email, "password": "short", "confirm": "different"}
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "An account with that email already exists." in text
    assert "Use at least" in text and "The passwords do not match." in text
    assert accounts.find_user_by_email(taken.email).id == taken.id


def test_sign_up_still_works_with_good_details(client):
    response = client.post(
        "/signup",
        data={"email": "new-person@example.com", "password": PASSWORD, "confirm": PASSWORD},
    )
    assert response.status_code == 302


def test_the_yearly_saving_is_computed_from_the_prices():
    monthly = Plan("pro_monthly", "p1", "Pro monthly", "$19 / month", "month")
    yearly = Plan("pro_yearly", "p2", "Pro yearly", "$190 / year", "year")
    saving = yearly_saving([monthly, yearly])
    assert (saving.amount, saving.percent, saving.per_month) == ("$38", 16, "$15.83")
    dear = Plan("pro_yearly", "p2", "Pro yearly", "$300 / year", "year")
    assert yearly_saving([monthly, dear]) is None
    assert yearly_saving([monthly, Plan("y", "p", "Y", "on request", "year")]) is None


def test_admin_tables_scroll_in_their_own_region_and_name_people(admin, admin_client, user):
    credits.grant_credits(user.id, 2, "thanks for the report", actor_id=admin.id)
    db.session.commit()
    users = page(admin_client, "/admin/")
    assert '<div class="table-scroll" role="region"' in users and 'tabindex="0"' in users
    detail = page(admin_client, f"/admin/users/{user.id}")
    assert f">{admin.email}</a>" in detail and f">#{admin.id}</a>" not in detail


def test_the_plan_cards_render_for_visitors_without_any_context(app):
    """The landing page includes the same partial: signed out, every card leads to sign-up
    and none offers a checkout."""
    from flask import render_template_string

    with app.test_request_context("/"):
        cards = render_template_string('{% include "billing/_plan_cards.html" %}')
    assert cards.count('<li class="plan-card') == 3 and "Recommended" in cards
    assert "Save $38 (16%)" in cards and "Start free" in cards
    assert "/dashboard/subscription/checkout" not in cards and "Your plan" not in cards
