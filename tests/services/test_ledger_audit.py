from datetime import timedelta

import pytest
from sqlalchemy import text

from credit_app.platform.extensions import db
from credit_app.services import credits
from credit_app.services.ledger_audit import audit_ledger

# These tests break the ledger on purpose to see the audit catch it.
pytestmark = pytest.mark.breaks_ledger


def checks_failing_for(user_id: int) -> set[str]:
    return {
        violation.check for violation in audit_ledger().violations if violation.user_id == user_id
    }


def test_a_normal_ledger_passes(user, make_user):
    other = make_user(plan="pro")
    credits.consume_credit(user.id, "interior", generation_id="a")
    reservation = credits.reserve_credit(user.id, "video", "b")
    credits.commit_reservation(reservation.id)
    released = credits.reserve_credit(other.id, "video", "c")
    credits.release_reservation(released.id)
    credits.reserve_credit(user.id, "sketch", "pending-but-not-late")
    assert checks_failing_for(user.id) == set()
    assert checks_failing_for(other.id) == set()


def test_a_balance_that_drifts_from_the_ledger(user):
    db.session.execute(
        text("UPDATE users SET credits_remaining = 9 WHERE id = :id"), {"id": user.id}
    )
    report = audit_ledger()
    assert not report.ok and user.id in report.offending_user_ids
    found = {item.check: item for item in report.violations if item.user_id == user.id}
    assert set(found) == {"balance", "lot_balance"}
    assert found["balance"].email == user.email
    assert "balance 9 but the ledger sums to 6" in found["balance"].detail
    assert "balance 9 but the live lots hold 6" in found["lot_balance"].detail


def test_a_row_that_breaks_the_running_balance(user):
    credits.consume_credit(user.id, "interior")
    db.session.execute(
        text(
            "UPDATE credit_transactions SET balance_after = 4 WHERE user_id = :id "
            "AND kind = 'consume'"
        ),
        {"id": user.id},
    )
    assert checks_failing_for(user.id) == {"running_balance"}


def test_a_negative_balance(user):
    db.session.execute(
        text("ALTER TABLE users DROP CONSTRAINT ck_users_credits_remaining_non_negative")
    )
    db.session.execute(
        text("UPDATE users SET credits_remaining = -1 WHERE id = :id"), {"id": user.id}
    )
    assert {"non_negative", "balance"} <= checks_failing_for(user.id)


def test_an_overdue_reservation(user):
    credits.reserve_credit(user.id, "video", "stuck", timeout=timedelta(minutes=-10))
    assert checks_failing_for(user.id) == {"overdue_reservation"}
    assert all(
        item.check != "overdue_reservation"
        for item in audit_ledger(grace=timedelta(hours=1)).violations
    )


def test_a_reservation_without_its_resolution_row(user):
    reservation = credits.reserve_credit(user.id, "video", "half")
    db.session.execute(
        text(
            "UPDATE credit_reservations SET status = 'committed', "
            "resolved_at = now() WHERE id = :id"
        ),
        {"id": reservation.id},
    )
    assert checks_failing_for(user.id) == {"reservation_ledger"}


def test_two_rows_for_one_idempotency_key(user):
    credits.consume_credit(user.id, "interior", generation_id="twice")
    db.session.execute(text("DROP INDEX uq_credit_transactions_user_generation_kind"))
    db.session.execute(
        text(
            "INSERT INTO credit_transactions (user_id, feature_used, credits_consumed, "
            "generation_id, kind, amount, balance_after) SELECT user_id, feature_used, 1, "
            "generation_id, kind, 0, 5 FROM credit_transactions WHERE generation_id = 'twice'"
        )
    )
    assert "idempotency" in checks_failing_for(user.id)


def test_a_lot_that_drifts_from_its_movements(user):
    db.session.execute(
        text("UPDATE credit_lots SET remaining = remaining - 1 WHERE user_id = :id"),
        {"id": user.id},
    )
    assert checks_failing_for(user.id) == {"lot_balance", "lot_movements"}


def test_a_ledger_row_without_its_lot_movements(user):
    credits.consume_credit(user.id, "interior")
    db.session.execute(
        text(
            "DELETE FROM credit_lot_movements WHERE transaction_id = (SELECT max(id) FROM "
            "credit_transactions WHERE user_id = :id)"
        ),
        {"id": user.id},
    )
    db.session.execute(
        text("UPDATE credit_lots SET remaining = remaining WHERE user_id = :id"), {"id": user.id}
    )
    failing = checks_failing_for(user.id)
    assert "lot_movements" in failing


def test_a_lapsed_lot_still_holding_credits(user):
    start = credits.utcnow()
    credits.grant_credits(user.id, 3, "promo", expires_at=start + timedelta(minutes=1), now=start)
    db.session.execute(
        text(
            "UPDATE credit_lots SET expires_at = now() - interval '1 hour' "
            "WHERE user_id = :id AND source = 'admin_grant'"
        ),
        {"id": user.id},
    )
    assert checks_failing_for(user.id) == {"lapsed_lot"}
    credits.expire_lapsed_lots()
    assert checks_failing_for(user.id) == set()


def test_a_pack_lot_without_its_grant_row(user):
    db.session.execute(
        text(
            "INSERT INTO credit_lots (user_id, source, granted, remaining, purchased, "
            "creem_order_id) VALUES (:id, 'pack', 0, 0, true, 'ord_orphan')"
        ),
        {"id": user.id},
    )
    assert checks_failing_for(user.id) == {"pack_order"}


@pytest.mark.parametrize(("corrupt", "exit_code"), [(False, 0), (True, 1)])
def test_the_cli_exits_non_zero_listing_offenders(app, user, corrupt, exit_code):
    if corrupt:
        db.session.execute(
            text("UPDATE users SET credits_remaining = 2 WHERE id = :id"), {"id": user.id}
        )
    result = app.test_cli_runner().invoke(args=["credits", "audit"])
    assert result.exit_code == exit_code, result.output
    if corrupt:
        assert f"user {user.id} ({user.email})" in result.output
        assert "[balance]" in result.output
    else:
        assert "Ledger OK" in result.output
