"""Model-based property test: any sequence of grants, spends, holds, commits, releases and
sweeps leaves the balance equal to the sum of the ledger, never below zero, and equal to
what a plain in-memory model of the rules predicts, operation by operation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credit_app import errors
from credit_app.extensions import db
from credit_app.features import FEATURE_KEYS
from credit_app.services import accounts, credits
from tests.conftest import PASSWORD

HOLD = timedelta(seconds=10)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.integers(min_value=-3, max_value=20)),
        st.tuples(st.just("consume"), st.sampled_from(FEATURE_KEYS[:2]),
                  st.sampled_from([None, "a", "b", "r1"])),
        st.tuples(st.just("reserve"), st.sampled_from(FEATURE_KEYS[:2]),
                  st.sampled_from(["r1", "r2", "r3", "a"])),
        st.tuples(st.just("commit"), st.integers(min_value=0, max_value=1)),
        st.tuples(st.just("release"), st.integers(min_value=0, max_value=1)),
        st.tuples(st.just("sweep"), st.integers(min_value=0, max_value=20)),
    ),
    max_size=25,
)


@dataclass
class Model:
    """What the rules say should happen, with no database."""

    pro: bool
    balance: int = 6
    consumed: dict[str, str] = field(default_factory=dict)
    holds: dict[str, dict] = field(default_factory=dict)

    @property
    def cost(self) -> int:
        return 0 if self.pro else 1

    def grant(self, amount: int) -> str:
        if amount < 1:
            return "invalid_amount"
        self.balance += amount
        return "ok"

    def consume(self, feature: str, generation_id: str | None) -> str:
        if generation_id is not None:
            if generation_id in self.holds:
                return "idempotency_conflict"
            if generation_id in self.consumed:
                return "ok" if self.consumed[generation_id] == feature else "idempotency_conflict"
        if self.balance < self.cost:
            return "insufficient_credits"
        self.balance -= self.cost
        if generation_id is not None:
            self.consumed[generation_id] = feature
        return "ok"

    def reserve(self, feature: str, generation_id: str) -> str:
        if generation_id in self.holds:
            return "ok" if self.holds[generation_id]["feature"] == feature \
                else "idempotency_conflict"
        if generation_id in self.consumed:
            return "idempotency_conflict"
        if self.balance < self.cost:
            return "insufficient_credits"
        self.balance -= self.cost
        self.holds[generation_id] = {"feature": feature, "amount": self.cost,
                                     "status": "pending"}
        return "ok"

    def commit(self, generation_id: str) -> str:
        hold = self.holds[generation_id]
        return {"pending": "ok", "committed": "ok", "released": "reservation_not_pending",
                "expired": "reservation_expired"}[self._resolve(hold, "committed")]

    def release(self, generation_id: str) -> str:
        hold = self.holds[generation_id]
        if hold["status"] == "committed":
            return "reservation_not_pending"
        if self._resolve(hold, "released") == "pending":
            self.balance += hold["amount"]
        return "ok"

    def sweep(self, seconds: int) -> str:
        if timedelta(seconds=seconds) >= HOLD:
            for hold in self.holds.values():
                if self._resolve(hold, "expired") == "pending":
                    self.balance += hold["amount"]
        return "ok"

    @staticmethod
    def _resolve(hold: dict, status: str) -> str:
        before = hold["status"]
        if before == "pending":
            hold["status"] = status
        return before


def run(step: tuple, user_id: int, start, model: Model, holds: list[str]) -> tuple[str, str]:
    name, *args = step
    if name in ("commit", "release"):
        if not holds:
            return "ok", "ok"
        generation_id = holds[args[0] % len(holds)]
        reservation = db.session.execute(
            db.select(credits.CreditReservation).filter_by(user_id=user_id,
                                                          generation_id=generation_id)
        ).scalar_one()
        call = (credits.commit_reservation if name == "commit" else credits.release_reservation)
        expected = getattr(model, name)(generation_id)
        return _outcome(lambda: call(reservation.id, now=start)), expected
    if name == "grant":
        return _outcome(lambda: credits.grant_credits(user_id, args[0], "property")), \
            model.grant(args[0])
    if name == "consume":
        return _outcome(lambda: credits.consume_credit(user_id, *args)), model.consume(*args)
    if name == "reserve":
        outcome = _outcome(lambda: credits.reserve_credit(user_id, *args, timeout=HOLD,
                                                          now=start))
        expected = model.reserve(*args)
        if expected == "ok" and args[1] not in holds:
            holds.append(args[1])
        return outcome, expected
    return _outcome(lambda: credits.expire_overdue_reservations(
        now=start + timedelta(seconds=args[0]))), model.sweep(args[0])


def _outcome(call) -> str:
    try:
        call()
    except errors.DomainError as exc:
        return exc.code
    return "ok"


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=operations, pro=st.booleans())
def test_balance_always_equals_the_ledger_and_the_model(app, steps, pro):
    savepoint = db.session.begin_nested()
    try:
        user = accounts.register_user(f"prop-{len(steps)}@example.com", PASSWORD)
        user.subscription_status = "pro" if pro else "free"
        model, holds, start = Model(pro=pro), [], credits.utcnow()
        for step in steps:
            outcome, expected = run(step, user.id, start, model, holds)
            assert outcome == expected, step
            status = credits.get_user_credits(user.id)
            assert status.remaining == credits.ledger_balance(user.id) == model.balance
            assert status.remaining >= 0
    finally:
        savepoint.rollback()
