import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select, text

from credit_app import errors
from credit_app.generation.features import FEATURES
from credit_app.models import CreditReservation, CreditTransaction, LedgerKind, ReservationStatus
from credit_app.platform.extensions import db
from credit_app.services import credits
from credit_app.services.credits import utcnow
from tests.ledger_support import ledger_balance


def ledger(user_id):
    return (
        db.session.execute(
            select(CreditTransaction)
            .where(CreditTransaction.user_id == user_id)
            .order_by(CreditTransaction.id)
        )
        .scalars()
        .all()
    )


def explain(sql, params):
    return "\n".join(db.session.execute(text(f"EXPLAIN {sql}"), params).scalars())


def explain_driver(sql, params):
    """EXPLAIN a statement as the driver received it (psycopg's placeholders)."""
    cursor = db.session.connection().connection.driver_connection.cursor()
    cursor.execute(f"EXPLAIN {sql}", params)
    return "\n".join(row[0] for row in cursor.fetchall())


def assert_balanced(user_id):
    status = credits.get_user_credits(user_id)
    assert status.remaining == ledger_balance(user_id)
    assert status.remaining >= 0


class TestReadCredits:
    def test_new_user_has_six_of_six(self, user):
        status = credits.get_user_credits(user.id)
        assert (status.remaining, status.total, status.subscription_status) == (6, 6, "free")
        assert status.last_updated is not None
        assert not status.unlimited

    def test_unknown_user(self):
        with pytest.raises(errors.UserNotFound):
            credits.get_user_credits(987654321)

    def test_validate_usage_allows_and_changes_nothing(self, user):
        check = credits.validate_credit_usage(user.id, "video")
        assert check.allowed and check.remaining == 6 and check.cost == 1
        assert credits.get_user_credits(user.id).remaining == 6

    def test_validate_usage_refuses_at_zero_but_not_for_pro(self, make_user):
        broke = make_user()
        for _ in range(6):
            credits.consume_credit(broke.id, "interior")
        assert not credits.validate_credit_usage(broke.id, "interior").allowed
        pro = make_user(plan="pro")
        check = credits.validate_credit_usage(pro.id, "interior")
        assert check.allowed and check.unlimited and check.cost == 0

    def test_validate_usage_errors(self, user):
        with pytest.raises(errors.UnknownFeature):
            credits.validate_credit_usage(user.id, "teleport")
        with pytest.raises(errors.UserNotFound):
            credits.validate_credit_usage(987654321, "interior")


class TestConsume:
    def test_consumes_one_and_writes_the_ledger(self, user):
        result = credits.consume_credit(user.id, "sketch", "gen-1")
        assert result.success and result.remaining_credits == 5 and not result.replayed
        entry = ledger(user.id)[-1]
        assert (
            entry.kind,
            entry.amount,
            entry.credits_consumed,
            entry.balance_after,
            entry.feature_used,
            entry.generation_id,
        ) == ("consume", -1, 1, 5, "sketch", "gen-1")
        assert_balanced(user.id)

    def test_refuses_at_zero_and_changes_nothing(self, user):
        for _ in range(6):
            credits.consume_credit(user.id, "remove")
        rows_before = len(ledger(user.id))
        with pytest.raises(errors.InsufficientCredits) as caught:
            credits.consume_credit(user.id, "remove")
        assert caught.value.details == {"remaining": 0, "feature": "remove"}
        assert len(ledger(user.id)) == rows_before
        assert credits.get_user_credits(user.id).remaining == 0

    def test_same_generation_id_charges_once(self, user):
        first = credits.consume_credit(user.id, "video", "same")
        again = credits.consume_credit(user.id, "video", "same")
        assert again.replayed and again.transaction_id == first.transaction_id
        assert credits.get_user_credits(user.id).remaining == 5
        assert again.message == first.message

    def test_a_replay_returns_the_first_outcome_not_the_current_balance(self, user):
        first = credits.consume_credit(user.id, "video", "first")
        credits.consume_credit(user.id, "video", "second")
        again = credits.consume_credit(user.id, "video", "first")
        assert (
            (again.success, again.remaining_credits, again.message)
            == (first.success, first.remaining_credits, first.message)
            == (True, 5, "Credit consumed.")
        )
        assert credits.get_user_credits(user.id).remaining == 4

    def test_a_replay_succeeds_even_once_the_balance_is_empty(self, user):
        first = credits.consume_credit(user.id, "video", "early")
        for index in range(5):
            credits.consume_credit(user.id, "video", f"later-{index}")
        again = credits.consume_credit(user.id, "video", "early")
        assert again.replayed and again.remaining_credits == first.remaining_credits == 5

    def test_an_empty_balance_still_conflicts_on_a_held_id(self, user):
        credits.reserve_credit(user.id, "video", "held")
        for index in range(5):
            credits.consume_credit(user.id, "video", f"spent-{index}")
        with pytest.raises(errors.IdempotencyConflict):
            credits.consume_credit(user.id, "video", "held")
        with pytest.raises(errors.InsufficientCredits):
            credits.consume_credit(user.id, "video", "fresh")

    def test_pro_uses_cost_nothing_yet_a_generation_id_is_recorded_once(self, make_user):
        pro = make_user(plan="pro")
        first = credits.consume_credit(pro.id, "video", "pro-same")
        again = credits.consume_credit(pro.id, "video", "pro-same")
        assert not first.replayed and again.replayed
        assert again.transaction_id == first.transaction_id
        assert [e.generation_id for e in ledger(pro.id) if e.kind == "consume"] == ["pro-same"]
        with pytest.raises(errors.IdempotencyConflict):
            credits.consume_credit(pro.id, "interior", "pro-same")
        credits.reserve_credit(pro.id, "video", "pro-held")
        with pytest.raises(errors.IdempotencyConflict):
            credits.consume_credit(pro.id, "video", "pro-held")
        assert_balanced(pro.id)

    def test_same_generation_id_for_another_feature_conflicts(self, user):
        credits.consume_credit(user.id, "video", "same")
        with pytest.raises(errors.IdempotencyConflict):
            credits.consume_credit(user.id, "interior", "same")

    def test_generation_ids_are_per_user(self, make_user):
        alice, bob = make_user(), make_user()
        credits.consume_credit(alice.id, "interior", "shared-id")
        result = credits.consume_credit(bob.id, "interior", "shared-id")
        assert not result.replayed and result.remaining_credits == 5

    def test_pro_is_never_blocked_yet_recorded_with_amount_zero(self, make_user):
        pro = make_user(plan="pro")
        for _ in range(10):
            result = credits.consume_credit(pro.id, "exterior")
        assert result.remaining_credits == 6
        uses = [e for e in ledger(pro.id) if e.kind == "consume"]
        assert len(uses) == 10
        assert all(e.amount == 0 and e.credits_consumed == 1 for e in uses)
        assert all(e.metadata_["plan"] == "pro" for e in uses)
        assert_balanced(pro.id)

    @pytest.mark.parametrize("feature", [None, "", "INTERIOR", "registration", 5, ["video"]])
    def test_unknown_feature(self, user, feature):
        with pytest.raises(errors.UnknownFeature):
            credits.consume_credit(user.id, feature)

    @pytest.mark.parametrize("generation_id", ["", "x" * 256, "tab\there", 12])
    def test_bad_generation_id(self, user, generation_id):
        with pytest.raises(errors.ValidationFailed):
            credits.consume_credit(user.id, "interior", generation_id)

    def test_unknown_user(self):
        with pytest.raises(errors.UserNotFound):
            credits.consume_credit(987654321, "interior")

    def test_feature_cost_comes_from_the_table(self, user, monkeypatch):
        monkeypatch.setitem(FEATURES, "video", dataclasses.replace(FEATURES["video"], cost=3))
        assert credits.consume_credit(user.id, "video").remaining_credits == 3
        assert ledger(user.id)[-1].amount == -3
        credits.consume_credit(user.id, "video")
        with pytest.raises(errors.InsufficientCredits):
            credits.consume_credit(user.id, "video")


class TestReservations:
    def test_reserve_holds_then_commit_spends(self, user):
        reservation = credits.reserve_credit(user.id, "furnish", "gen-r")
        assert reservation.status == ReservationStatus.PENDING
        assert credits.get_user_credits(user.id).remaining == 5
        credits.commit_reservation(reservation.id)
        assert reservation.status == ReservationStatus.COMMITTED
        assert reservation.resolved_at is not None
        assert credits.get_user_credits(user.id).remaining == 5
        kinds = [(e.kind, e.amount, e.credits_consumed) for e in ledger(user.id)[1:]]
        assert kinds == [("reserve", -1, 0), ("consume", 0, 1)]
        assert_balanced(user.id)

    def test_release_returns_the_credit(self, user):
        reservation = credits.reserve_credit(user.id, "furnish", "gen-r")
        credits.release_reservation(reservation.id, reason="model failed")
        assert reservation.status == ReservationStatus.RELEASED
        assert credits.get_user_credits(user.id).remaining == 6
        release = ledger(user.id)[-1]
        assert (release.kind, release.amount, release.metadata_["reason"]) == (
            "release",
            1,
            "model failed",
        )
        assert_balanced(user.id)

    def test_repeats_are_idempotent(self, user):
        first = credits.reserve_credit(user.id, "interior", "gen-r")
        assert credits.reserve_credit(user.id, "interior", "gen-r").id == first.id
        credits.commit_reservation(first.id)
        credits.commit_reservation(first.id)
        assert credits.get_user_credits(user.id).remaining == 5
        assert len(ledger(user.id)) == 3

        second = credits.reserve_credit(user.id, "interior", "gen-s")
        credits.release_reservation(second.id)
        credits.release_reservation(second.id)
        assert credits.get_user_credits(user.id).remaining == 5
        assert len(ledger(user.id)) == 5

    def test_committed_cannot_be_released_and_released_cannot_be_committed(self, user):
        committed = credits.reserve_credit(user.id, "interior", "a")
        credits.commit_reservation(committed.id)
        with pytest.raises(errors.ReservationNotPending):
            credits.release_reservation(committed.id)
        released = credits.reserve_credit(user.id, "interior", "b")
        credits.release_reservation(released.id)
        with pytest.raises(errors.ReservationNotPending):
            credits.commit_reservation(released.id)

    def test_reserve_refuses_without_credit(self, user):
        for index in range(6):
            credits.reserve_credit(user.id, "video", f"g{index}")
        with pytest.raises(errors.InsufficientCredits):
            credits.reserve_credit(user.id, "video", "g6")
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(CreditReservation)
                .where(CreditReservation.user_id == user.id)
            )
            == 6
        )

    def test_generation_id_conflicts(self, user):
        credits.reserve_credit(user.id, "video", "held")
        with pytest.raises(errors.IdempotencyConflict):
            credits.reserve_credit(user.id, "interior", "held")
        with pytest.raises(errors.IdempotencyConflict):
            credits.consume_credit(user.id, "video", "held")
        credits.consume_credit(user.id, "video", "direct")
        with pytest.raises(errors.IdempotencyConflict):
            credits.reserve_credit(user.id, "video", "direct")

    def test_commit_after_timeout_is_refused_and_the_sweeper_returns_the_credit(self, user):
        start = utcnow()
        reservation = credits.reserve_credit(
            user.id, "video", "slow", timeout=timedelta(seconds=30), now=start
        )
        later = start + timedelta(seconds=31)
        with pytest.raises(errors.ReservationExpired):
            credits.commit_reservation(reservation.id, now=later)
        assert credits.expire_overdue_reservations(now=later) == [reservation.id]
        assert reservation.status == ReservationStatus.EXPIRED
        assert credits.get_user_credits(user.id).remaining == 6
        assert credits.expire_overdue_reservations(now=later) == []
        with pytest.raises(errors.ReservationExpired):
            credits.commit_reservation(reservation.id, now=later)
        assert ledger(user.id)[-1].metadata_["reason"] == "timeout"
        assert_balanced(user.id)

    def test_sweeper_leaves_live_and_resolved_holds_alone(self, user):
        start = utcnow()
        live = credits.reserve_credit(
            user.id, "video", "live", timeout=timedelta(hours=1), now=start
        )
        done = credits.reserve_credit(
            user.id, "video", "done", timeout=timedelta(seconds=1), now=start
        )
        credits.commit_reservation(done.id, now=start)
        assert credits.expire_overdue_reservations(now=start + timedelta(minutes=5)) == []
        assert live.status == ReservationStatus.PENDING
        assert done.status == ReservationStatus.COMMITTED

    def test_reservation_ids_are_scoped_to_their_owner(self, make_user):
        alice, bob = make_user(), make_user()
        reservation = credits.reserve_credit(alice.id, "video", "mine")
        with pytest.raises(errors.ReservationNotFound):
            credits.commit_reservation(reservation.id, user_id=bob.id)
        with pytest.raises(errors.ReservationNotFound):
            credits.release_reservation(reservation.id, user_id=bob.id)
        with pytest.raises(errors.ReservationNotFound):
            credits.commit_reservation(987654321)
        assert reservation.status == ReservationStatus.PENDING

    def test_pro_reservations_hold_nothing(self, make_user):
        pro = make_user(plan="pro")
        reservation = credits.reserve_credit(pro.id, "video", "p")
        assert reservation.amount == 0 and reservation.cost == 1
        credits.release_reservation(reservation.id)
        assert credits.get_user_credits(pro.id).remaining == 6
        assert_balanced(pro.id)


class TestGrant:
    def test_grant_adds_to_remaining_and_total(self, user, admin):
        entry = credits.grant_credits(user.id, 10, "Support apology", actor_id=admin.id)
        status = credits.get_user_credits(user.id)
        assert (status.remaining, status.total) == (16, 16)
        assert (
            entry.kind,
            entry.amount,
            entry.feature_used,
            entry.actor_id,
            entry.metadata_["reason"],
        ) == ("grant", 10, "admin_grant", admin.id, "Support apology")
        assert_balanced(user.id)

    @pytest.mark.parametrize("amount", [0, -5, 100_001, 10**20, 1.5, "10", True, None])
    def test_bad_amounts(self, user, amount):
        with pytest.raises(errors.InvalidAmount):
            credits.grant_credits(user.id, amount, "x")
        assert credits.get_user_credits(user.id).remaining == 6

    @pytest.mark.parametrize("reason", ["", "   ", None, "x" * 501])
    def test_reason_required(self, user, reason):
        with pytest.raises(errors.ValidationFailed):
            credits.grant_credits(user.id, 1, reason)

    def test_unknown_source_and_user(self, user):
        with pytest.raises(errors.ValidationFailed):
            credits.grant_credits(user.id, 1, "x", source="interior")
        with pytest.raises(errors.UserNotFound):
            credits.grant_credits(987654321, 1, "x")

    @pytest.mark.breaks_ledger
    def test_balance_ceiling(self, user):
        user.credits_remaining = credits.MAX_BALANCE - 5
        db.session.flush()
        with pytest.raises(errors.InvalidAmount):
            credits.grant_credits(user.id, 10, "too much")

    def test_registration_grant_cannot_happen_twice(self, user):
        from sqlalchemy.exc import IntegrityError

        with pytest.raises(IntegrityError), db.session.begin_nested():
            credits.grant_credits(user.id, 6, "again", source="registration")


class TestHistory:
    def test_newest_first_with_cursor_pages(self, user):
        for index in range(5):
            credits.consume_credit(user.id, "interior", f"h{index}")
        first = credits.get_credit_history(user.id, limit=4)
        assert [e.generation_id for e in first.items] == ["h4", "h3", "h2", "h1"]
        assert first.next_cursor
        second = credits.get_credit_history(user.id, first.next_cursor, limit=4)
        assert [e.kind for e in second.items] == ["consume", "grant"]
        assert second.next_cursor is None

    def test_only_own_rows(self, make_user):
        alice, bob = make_user(), make_user()
        credits.consume_credit(alice.id, "interior")
        assert len(credits.get_credit_history(bob.id).items) == 1

    def test_a_page_reads_the_users_own_index_when_their_rows_are_the_oldest(self, make_user):
        """The plan PostgreSQL picks for a page of a user whose 20,000 rows are spread over the
        oldest half of the table (a busy API client, then growth): the page is a range of the
        (user_id, id) index read in its order, with no sort. Asked for as `user_id = ... ORDER
        BY id DESC`, the planner walks the whole table backwards by id instead (shown first, so
        the data are known to set the trap)."""
        busy, *others = (make_user() for _ in range(12))
        zero_uses = text(
            "INSERT INTO credit_transactions (user_id, kind, amount, balance_after, feature_used, "
            "credits_consumed, metadata) SELECT CASE WHEN n % 2 = 0 AND :busy_share THEN :busy "
            "ELSE (:others)[1 + n % cardinality(:others)] END, 'consume', 0, 6, 'interior', 1, "
            "'{}' FROM generate_series(1, :count) AS n"
        )
        other_ids = [other.id for other in others]
        db.session.execute(
            zero_uses, {"busy": busy.id, "others": other_ids, "busy_share": True, "count": 40_000}
        )
        db.session.execute(
            zero_uses, {"busy": busy.id, "others": other_ids, "busy_share": False, "count": 40_000}
        )
        db.session.execute(text("ANALYZE credit_transactions"))
        direct = (
            "SELECT * FROM credit_transactions WHERE user_id = :user_id ORDER BY id DESC LIMIT 21"
        )
        assert "Backward using pk_credit_transactions" in explain(direct, {"user_id": busy.id})

        statements = []
        record = lambda *args: statements.append(args[2:4])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            page = credits.get_credit_history(busy.id)
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        assert len(page.items) == 20 and {e.user_id for e in page.items} == {busy.id}
        [(sql, params)] = [
            (sql, params) for sql, params in statements if "FROM credit_transactions" in sql
        ]
        plan = explain_driver(sql, params)
        assert "Index Scan using ix_credit_transactions_user_id_id" in plan, plan
        assert "Sort" not in plan and "pk_credit_transactions" not in plan, plan

    @pytest.mark.parametrize("cursor", ["garbage", "dHg6YWJj", "eHg6MTI", "%%%"])
    def test_bad_cursor(self, user, cursor):
        with pytest.raises(errors.ValidationFailed):
            credits.get_credit_history(user.id, cursor)

    @pytest.mark.parametrize("limit", [0, 101, -1, True])
    def test_bad_limit(self, user, limit):
        with pytest.raises(errors.ValidationFailed):
            credits.get_credit_history(user.id, limit=limit)

    def test_unknown_user(self):
        with pytest.raises(errors.UserNotFound):
            credits.get_credit_history(987654321)

    def test_entries_serialise(self, user):
        entry = credits.get_credit_history(user.id).items[0].to_dict()
        assert entry["kind"] == LedgerKind.GRANT and entry["amount"] == 6
        assert entry["metadata"] == {"reason": "Welcome credits"}


class TestChangePlan:
    def test_upgrade_and_downgrade_are_ledger_visible_and_keep_the_balance(self, user):
        credits.consume_credit(user.id, "interior")
        entry = credits.change_plan(
            user.id, "pro", "subscription.paid", details={"subscription_id": "sub_1"}
        )
        assert (entry.kind, entry.amount, entry.feature_used) == ("adjust", 0, "subscription")
        assert entry.metadata_ == {
            "reason": "subscription.paid",
            "from": "free",
            "to": "pro",
            "subscription_id": "sub_1",
        }
        assert credits.get_user_credits(user.id).unlimited
        assert credits.change_plan(user.id, "pro", "again") is None
        credits.change_plan(user.id, "free", "subscription.expired")
        status = credits.get_user_credits(user.id)
        assert (status.subscription_status, status.remaining) == ("free", 5)
        assert_balanced(user.id)

    def test_unknown_status_and_user(self, user):
        with pytest.raises(errors.ValidationFailed):
            credits.change_plan(user.id, "platinum", "x")
        with pytest.raises(errors.UserNotFound):
            credits.change_plan(987654321, "pro", "x")
