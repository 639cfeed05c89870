"""@credit_required on a generation view: reserve first, then hand the hold to the view."""

import pytest
from flask import jsonify

from credit_app import create_app
from credit_app.models import CreditReservation
from credit_app.platform.extensions import csrf, db
from credit_app.services import credits
from credit_app.web.credit_check import credit_required
from tests.conftest import SignedInClient


@pytest.fixture(scope="module")
def probe_app(app):
    """The real app plus one generation-starting view, as the dashboard's will be."""
    probe = create_app("testing", overrides={"WTF_CSRF_ENABLED": False, "SERVER_NAME": "localhost"})
    probe.test_client_class = SignedInClient

    @probe.post("/probe/generate")
    @csrf.exempt
    @credit_required("video")
    def generate(reservation: CreditReservation):
        db.session.commit()
        return jsonify(reservation_id=reservation.id, generation_id=reservation.generation_id)

    return probe


@pytest.fixture
def probe_client(probe_app, user):
    with probe_app.app_context():
        yield probe_app.test_client(user=user)


def test_reserves_and_passes_the_reservation(probe_client, user):
    response = probe_client.post("/probe/generate", data={"generation_id": "form-123"})
    assert response.status_code == 200
    assert response.json["generation_id"] == "form-123"
    reservation = db.session.get(CreditReservation, response.json["reservation_id"])
    assert reservation.status == "pending" and reservation.feature == "video"
    assert credits.get_user_credits(user.id).remaining == 5


def test_double_submit_of_the_same_form_holds_once(probe_client, user):
    first = probe_client.post("/probe/generate", data={"generation_id": "twice"})
    second = probe_client.post("/probe/generate", data={"generation_id": "twice"})
    assert first.json == second.json
    assert credits.get_user_credits(user.id).remaining == 5


def test_without_an_id_each_request_is_its_own_generation(probe_client, user):
    ids = {probe_client.post("/probe/generate", json={}).json["generation_id"] for _ in range(2)}
    assert len(ids) == 2
    assert credits.get_user_credits(user.id).remaining == 4


def test_json_request_without_credits_gets_402(probe_client, user):
    for _ in range(6):
        credits.consume_credit(user.id, "interior")
    db.session.commit()
    response = probe_client.post("/probe/generate", json={}, headers={"Accept": "application/json"})
    assert response.status_code == 402
    assert response.json["error"]["code"] == "insufficient_credits"
    assert "feature=video" in response.json["error"]["upgrade_url"]


def test_htmx_request_without_credits_gets_the_upgrade_modal(probe_client, user):
    for _ in range(6):
        credits.consume_credit(user.id, "interior")
    db.session.commit()
    response = probe_client.post("/probe/generate", headers={"HX-Request": "true"})
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "You've used all your free credits!" in text and 'role="dialog"' in text
    assert "feature=video" in text
    assert response.headers["HX-Retarget"] == "#modal-root"


def test_page_request_without_credits_gets_a_page_with_the_upgrade_link(probe_client, user):
    for _ in range(6):
        credits.consume_credit(user.id, "interior")
    db.session.commit()
    response = probe_client.post("/probe/generate", headers={"Accept": "text/html"})
    assert response.status_code == 402
    assert "/dashboard/subscription" in response.get_data(as_text=True)


def test_anonymous_is_refused_before_any_reservation(probe_app):
    with probe_app.app_context():
        response = probe_app.test_client().post(
            "/probe/generate", json={}, headers={"Accept": "application/json"}
        )
    assert response.status_code == 401


def test_a_typo_in_the_feature_fails_at_import_time():
    from credit_app.errors import UnknownFeature

    with pytest.raises(UnknownFeature):
        credit_required("vidoe")
