from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from credit_app.models import (
    AnalyticsEvent,
    ApiToken,
    CreditTransaction,
    Generation,
    GenerationStatus,
    Subscription,
    User,
)
from credit_app.platform.extensions import db
from credit_app.services import accounts, analytics, audit, credits
from credit_app.services.ledger_audit import audit_ledger
from tests.conftest import PASSWORD
from tests.ledger_support import ledger_balance


def delete(client, password=PASSWORD, confirm="y"):
    data = {"password": password}
    if confirm:
        data["confirm"] = confirm
    return client.post("/settings/account", data=data)


def test_the_account_page_offers_deletion(user_client, user):
    page = user_client.get("/settings/account").get_data(as_text=True)
    assert user.email in page and "Delete my account" in page


def test_wrong_password_or_no_confirmation_changes_nothing(user_client, user):
    assert delete(user_client, password="not my password").status_code == 422
    assert delete(user_client, confirm=None).status_code == 422
    db.session.refresh(user)
    assert not user.is_deleted and accounts.authenticate(user.email, PASSWORD) is not None


def test_deletion_removes_personal_data_and_keeps_totals(app, user_client, user, admin, tmp_path):
    app.config["GENERATION_STORAGE_PATH"] = tmp_path
    email = user.email
    folder = tmp_path / str(user.id) / "1"
    folder.mkdir(parents=True)
    (folder / "input.png").write_bytes(b"photo")
    reservation = credits.reserve_credit(user.id, "interior", "g-private")
    credits.commit_reservation(reservation.id)
    db.session.add(
        Generation(
            user_id=user.id,
            generation_id="g-private",
            reservation_id=reservation.id,
            feature="interior",
            options={"prompt": "my living room at 12 Elm Street"},
            input_path=str(folder / "input.png"),
            output_path=str(folder / "output.png"),
            status=GenerationStatus.SUCCEEDED,
        )
    )
    credits.grant_credits(user.id, 2, f"Sorry {email}, here are credits", actor_id=admin.id)
    accounts.create_api_token(user.id, "script")
    analytics.track("upgrade_clicked", user.id, properties={"note": "x"})
    db.session.commit()
    balance = credits.get_user_credits(user.id).remaining

    response = delete(user_client)
    assert response.status_code == 302 and "/login" in response.headers["Location"]

    tombstone = db.session.get(User, user.id)
    assert tombstone.is_deleted and tombstone.email.endswith("@deleted.invalid")
    assert accounts.find_user_by_email(email) is None
    assert accounts.authenticate(email, PASSWORD) is None
    assert credits.get_user_credits(user.id).remaining == balance == ledger_balance(user.id)
    metadata = [
        entry.metadata_
        for entry in db.session.execute(
            select(CreditTransaction).where(CreditTransaction.user_id == user.id)
        ).scalars()
    ]
    assert all("reason" not in item for item in metadata) and email not in repr(metadata)
    generation = db.session.execute(
        select(Generation).where(Generation.user_id == user.id)
    ).scalar_one()
    assert (generation.options, generation.input_path, generation.output_path) == ({}, "", None)
    assert not folder.exists()
    assert db.session.execute(select(ApiToken).where(ApiToken.user_id == user.id)).all() == []
    assert (
        db.session.execute(select(AnalyticsEvent).where(AnalyticsEvent.user_id == user.id)).all()
        == []
    )
    assert audit.list_entries(action="account.delete").items[0].target_user_id == user.id
    assert audit_ledger().ok
    # The session ended and cannot come back.
    assert user_client.get("/dashboard").status_code == 302
    assert delete(user_client).status_code == 302


def test_a_renewing_subscription_must_be_canceled_first(user_client, user):
    now = datetime.now(UTC)
    db.session.add(
        Subscription(
            user_id=user.id,
            creem_subscription_id="sub_keep",
            product_id="prod_standin_pro_monthly",
            status="active",
            current_period_start=now,
            current_period_end=now + timedelta(days=30),
        )
    )
    credits.change_plan(user.id, "pro", "Pro started")
    db.session.commit()
    response = delete(user_client)
    assert response.status_code == 409
    assert "Cancel it on the Subscription page" in response.get_data(as_text=True)
    db.session.refresh(user)
    assert not user.is_deleted
