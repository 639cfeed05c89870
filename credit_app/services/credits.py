"""The credit service: every read and change of a user's credits goes through here.

Rules kept in this one module:
- Each change of `users.credits_remaining` writes one ledger row in the same transaction
  (`_post`), so the balance always equals the sum of the user's ledger amounts.
- Every mutation first locks the user's row (`SELECT ... FOR UPDATE`), which serialises
  concurrent spends of one user and fixes the lock order (user, then reservation).
- A `generation_id` makes a spend idempotent: a retry returns the first outcome.
- Pro users are never blocked; their uses are still written, with amount 0.

Services flush and never commit: the caller (a request or a job) owns the transaction.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from credit_app import live
from credit_app.clock import utcnow
from credit_app.errors import (
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAmount,
    ReservationExpired,
    ReservationNotFound,
    ReservationNotPending,
    UnknownFeature,
    UserNotFound,
    ValidationFailed,
)
from credit_app.extensions import db
from credit_app.features import FEATURES, SYSTEM_SOURCES, Feature
from credit_app.models import (
    SUBSCRIPTION_STATUSES,
    CreditReservation,
    CreditTransaction,
    LedgerKind,
    ReservationStatus,
    User,
)
from credit_app.services import ledger_observers, rollout

MAX_GRANT = 100_000
MAX_BALANCE = 1_000_000_000
MAX_HISTORY_PAGE = 100
DEFAULT_RESERVATION_TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class UserCredits:
    user_id: int
    remaining: int
    total: int
    subscription_status: str
    last_updated: datetime

    @property
    def unlimited(self) -> bool:
        return self.subscription_status == "pro"


@dataclass(frozen=True)
class ConsumeResult:
    success: bool
    remaining_credits: int
    transaction_id: int
    replayed: bool

    @property
    def message(self) -> str:
        if self.replayed:
            return "This generation was already paid for; nothing was charged again."
        return "Credit consumed."


@dataclass(frozen=True)
class CreditCheck:
    allowed: bool
    remaining: int
    cost: int
    unlimited: bool


@dataclass(frozen=True)
class HistoryPage:
    items: list[CreditTransaction]
    next_cursor: str | None


def get_feature(feature: str) -> Feature:
    """Return the feature definition. Raises UnknownFeature."""
    try:
        return FEATURES[feature]
    except (KeyError, TypeError):
        raise UnknownFeature(
            f"Unknown feature {feature!r}; expected one of: {', '.join(FEATURES)}.",
        ) from None


def cost_for(user: User, feature: Feature) -> int:
    """What a use of `feature` takes from `user`'s balance: nothing for Pro, and nothing for a
    free user outside the enforcement rollout (services/rollout.py; the use is still recorded).
    """
    if user.is_pro or not rollout.is_enforced(user.id):
        return 0
    return feature.cost


def _validate_generation_id(generation_id: str) -> str:
    if not isinstance(generation_id, str) or not 1 <= len(generation_id) <= 255:
        raise ValidationFailed("generation_id must be a string of 1 to 255 characters.")
    if not generation_id.isprintable():
        raise ValidationFailed("generation_id must contain printable characters only.")
    return generation_id


def lock_user(user_id: int) -> User:
    """Lock and return the user's row for the rest of the transaction. Raises UserNotFound."""
    user = db.session.execute(
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if user is None:
        raise UserNotFound()
    return user


def _post(
    user: User,
    *,
    kind: LedgerKind,
    amount: int,
    source: str,
    credits_consumed: int = 0,
    generation_id: str | None = None,
    reservation_id: int | None = None,
    actor_id: int | None = None,
    metadata: dict | None = None,
) -> CreditTransaction:
    """Change a locked user's balance by `amount` and write the ledger row for it.

    Raises InsufficientCredits if the balance would go below zero, InvalidAmount above the maximum.
    """
    balance = user.credits_remaining + amount
    if balance < 0:
        raise InsufficientCredits(remaining=user.credits_remaining)
    if balance > MAX_BALANCE:
        raise InvalidAmount(f"The balance may not exceed {MAX_BALANCE} credits.")
    user.credits_remaining = balance
    if kind == LedgerKind.GRANT:
        user.credits_total += amount
        user.credits_granted_at = utcnow()
    entry = CreditTransaction(
        user_id=user.id,
        kind=kind,
        amount=amount,
        balance_after=balance,
        feature_used=source,
        credits_consumed=credits_consumed,
        generation_id=generation_id,
        reservation_id=reservation_id,
        actor_id=actor_id,
        metadata_=metadata or {},
    )
    db.session.add(entry)
    db.session.flush()
    live.publish_after_commit(db.session(), live.credit_update(
        kind, user.id, balance, user.credits_total, user.subscription_status,
        source if source in FEATURES else None, entry.id))
    ledger_observers.observe(entry, user)
    return entry


def get_user_credits(user_id: int) -> UserCredits:
    """Return the user's balance. Raises UserNotFound."""
    row = db.session.execute(
        select(User.credits_remaining, User.credits_total, User.subscription_status,
               User.updated_at).where(User.id == user_id)
    ).one_or_none()
    if row is None:
        raise UserNotFound()
    return UserCredits(user_id, row.credits_remaining, row.credits_total,
                       row.subscription_status, row.updated_at)


def validate_credit_usage(user_id: int, feature: str) -> CreditCheck:
    """Say whether the user could start `feature` now, changing nothing.

    Raises UnknownFeature, UserNotFound.
    """
    definition = get_feature(feature)
    user = db.session.get(User, user_id)
    if user is None:
        raise UserNotFound()
    cost = cost_for(user, definition)
    return CreditCheck(user.credits_remaining >= cost, user.credits_remaining, cost, user.is_pro)


def _prior_use(user_id: int, generation_id: str) -> tuple[CreditTransaction | None,
                                                          CreditReservation | None]:
    """What `generation_id` already did for this user: a spend, a hold, both or neither.

    One round trip on the usual path (a new id); the rows are loaded only when they exist.
    """
    consumed_id = (
        select(CreditTransaction.id)
        .where(CreditTransaction.user_id == user_id,
               CreditTransaction.generation_id == generation_id,
               CreditTransaction.kind == LedgerKind.CONSUME)
        .scalar_subquery()
    )
    reservation_id = (
        select(CreditReservation.id)
        .where(CreditReservation.user_id == user_id,
               CreditReservation.generation_id == generation_id)
        .scalar_subquery()
    )
    found = db.session.execute(select(consumed_id, reservation_id)).one()
    return (db.session.get(CreditTransaction, found[0]) if found[0] else None,
            db.session.get(CreditReservation, found[1]) if found[1] else None)


def consume_credit(user_id: int, feature: str, generation_id: str | None = None) -> ConsumeResult:
    """Spend one use of `feature` at once (a reservation committed in one step).

    With a `generation_id` the call is idempotent: a repeat returns the first outcome.
    Raises UnknownFeature, ValidationFailed, UserNotFound, InsufficientCredits,
    IdempotencyConflict (the id was used for another feature or is held by a reservation).
    """
    definition = get_feature(feature)
    if generation_id is not None:
        _validate_generation_id(generation_id)
    user = lock_user(user_id)
    if generation_id is not None:
        consumed, reservation = _prior_use(user_id, generation_id)
        if consumed is not None and consumed.reservation_id is None:
            if consumed.feature_used != feature:
                raise IdempotencyConflict()
            return ConsumeResult(True, user.credits_remaining, consumed.id, replayed=True)
        if consumed is not None or reservation is not None:
            raise IdempotencyConflict("That generation id belongs to a reserved generation.")
    cost = cost_for(user, definition)
    if user.credits_remaining < cost:
        raise InsufficientCredits(remaining=user.credits_remaining, feature=feature)
    entry = _post(
        user,
        kind=LedgerKind.CONSUME,
        amount=-cost,
        source=feature,
        credits_consumed=definition.cost,
        generation_id=generation_id,
        metadata={"plan": user.subscription_status, **rollout.enforcement_note(user)},
    )
    return ConsumeResult(True, user.credits_remaining, entry.id, replayed=False)


def reserve_credit(
    user_id: int,
    feature: str,
    generation_id: str,
    timeout: timedelta = DEFAULT_RESERVATION_TIMEOUT,
    now: datetime | None = None,
) -> CreditReservation:
    """Hold the credit for a generation that takes time; a repeat returns the same hold.

    Raises UnknownFeature, ValidationFailed, UserNotFound, InsufficientCredits,
    IdempotencyConflict.
    """
    definition = get_feature(feature)
    _validate_generation_id(generation_id)
    user = lock_user(user_id)
    consumed, reservation = _prior_use(user_id, generation_id)
    if reservation is not None:
        if reservation.feature != feature:
            raise IdempotencyConflict()
        return reservation
    if consumed is not None:
        raise IdempotencyConflict("That generation id was already consumed directly.")
    cost = cost_for(user, definition)
    if user.credits_remaining < cost:
        raise InsufficientCredits(remaining=user.credits_remaining, feature=feature)
    reservation = CreditReservation(
        user_id=user_id,
        generation_id=generation_id,
        feature=feature,
        amount=cost,
        cost=definition.cost,
        status=ReservationStatus.PENDING,
        expires_at=(now or utcnow()) + timeout,
    )
    db.session.add(reservation)
    db.session.flush()
    _post(
        user,
        kind=LedgerKind.RESERVE,
        amount=-cost,
        source=feature,
        generation_id=generation_id,
        reservation_id=reservation.id,
        metadata={"plan": user.subscription_status,
                  "expires_at": reservation.expires_at.isoformat(),
                  **rollout.enforcement_note(user)},
    )
    return reservation


def _locked_reservation(reservation_id: int, user_id: int | None) -> tuple[User, CreditReservation]:
    reservation = db.session.get(CreditReservation, reservation_id)
    if reservation is None or (user_id is not None and reservation.user_id != user_id):
        raise ReservationNotFound()
    user = lock_user(reservation.user_id)
    db.session.refresh(reservation)
    return user, reservation


def commit_reservation(
    reservation_id: int, user_id: int | None = None, now: datetime | None = None
) -> CreditReservation:
    """Turn a hold into a spend (the generation succeeded); a repeat changes nothing.

    Raises ReservationNotFound, ReservationExpired (past its timeout: the sweeper returns the
    credit), ReservationNotPending (already released).
    """
    user, reservation = _locked_reservation(reservation_id, user_id)
    now = now or utcnow()
    if reservation.status == ReservationStatus.COMMITTED:
        return reservation
    if reservation.status == ReservationStatus.EXPIRED or (
        reservation.is_pending and reservation.expires_at <= now
    ):
        raise ReservationExpired()
    if reservation.status != ReservationStatus.PENDING:
        raise ReservationNotPending("The reservation was released; its credit was returned.")
    reservation.status = ReservationStatus.COMMITTED
    reservation.resolved_at = now
    _post(
        user,
        kind=LedgerKind.CONSUME,
        amount=0,
        source=reservation.feature,
        credits_consumed=reservation.cost,
        generation_id=reservation.generation_id,
        reservation_id=reservation.id,
        metadata={"plan": user.subscription_status},
    )
    return reservation


def _release_locked(
    user: User, reservation: CreditReservation, reason: str, now: datetime,
    status: ReservationStatus,
) -> None:
    reservation.status = status
    reservation.resolved_at = now
    _post(
        user,
        kind=LedgerKind.RELEASE,
        amount=reservation.amount,
        source=reservation.feature,
        generation_id=reservation.generation_id,
        reservation_id=reservation.id,
        metadata={"reason": reason},
    )


def release_reservation(
    reservation_id: int,
    user_id: int | None = None,
    reason: str = "released",
    now: datetime | None = None,
) -> CreditReservation:
    """Give a held credit back (the generation failed); a repeat changes nothing.

    Raises ReservationNotFound, ReservationNotPending (already committed).
    """
    user, reservation = _locked_reservation(reservation_id, user_id)
    if reservation.status in (ReservationStatus.RELEASED, ReservationStatus.EXPIRED):
        return reservation
    if reservation.status == ReservationStatus.COMMITTED:
        raise ReservationNotPending("The reservation was committed; its credit is spent.")
    _release_locked(user, reservation, reason, now or utcnow(), ReservationStatus.RELEASED)
    return reservation


def expire_overdue_reservations(now: datetime | None = None, limit: int = 500) -> list[int]:
    """Return the credit of every pending hold past its timeout (a crashed worker's).

    Returns the ids it expired. Safe to run twice or alongside commits: each hold is
    resolved exactly once, under the user's row lock.
    """
    now = now or utcnow()
    overdue = db.session.execute(
        select(CreditReservation.id)
        .where(CreditReservation.status == ReservationStatus.PENDING,
               CreditReservation.expires_at <= now)
        .order_by(CreditReservation.expires_at)
        .limit(limit)
    ).scalars().all()
    expired = []
    for reservation_id in overdue:
        user, reservation = _locked_reservation(reservation_id, None)
        if reservation.is_pending and reservation.expires_at <= now:
            _release_locked(user, reservation, "timeout", now, ReservationStatus.EXPIRED)
            expired.append(reservation_id)
    return expired


def grant_credits(
    user_id: int,
    amount: int,
    reason: str,
    actor_id: int | None = None,
    source: str = "admin_grant",
) -> CreditTransaction:
    """Add `amount` credits to the user's balance and total.

    Raises InvalidAmount, ValidationFailed (empty reason or unknown source), UserNotFound.
    """
    amount, reason = _checked_amount(amount), _checked_reason(reason)
    if source not in SYSTEM_SOURCES:
        raise ValidationFailed(f"Unknown grant source {source!r}.")
    user = lock_user(user_id)
    return _post(
        user,
        kind=LedgerKind.GRANT,
        amount=amount,
        source=source,
        credits_consumed=0,
        actor_id=actor_id,
        metadata={"reason": reason},
    )


def remove_credits(user_id: int, amount: int, reason: str,
                   actor_id: int | None = None) -> CreditTransaction:
    """Take `amount` credits off the user's balance (a staff correction, with its reason).

    Raises InvalidAmount, ValidationFailed (no reason, or more than the balance), UserNotFound.
    """
    amount, reason = _checked_amount(amount), _checked_reason(reason)
    user = lock_user(user_id)
    if amount > user.credits_remaining:
        raise ValidationFailed(f"The user has {user.credits_remaining} credits; remove at most "
                               "that many.", field="amount")
    return _post(user, kind=LedgerKind.ADJUST, amount=-amount, source="adjustment",
                 actor_id=actor_id, metadata={"reason": reason})


def _checked_amount(amount: object) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_GRANT:
        raise InvalidAmount(f"The amount must be a whole number between 1 and {MAX_GRANT}.",
                            field="amount")
    return amount


def _checked_reason(reason: object) -> str:
    from credit_app.services.audit import clean_reason

    return clean_reason(reason)


def change_plan(
    user_id: int,
    status: str,
    reason: str,
    actor_id: int | None = None,
    details: dict | None = None,
) -> CreditTransaction | None:
    """Set the user's subscription status, leaving an amount-0 ledger row that explains it.

    The balance is kept as it is (falling back to free keeps the credits left). Returns the
    ledger row, or None when the status was already `status`.
    Raises ValidationFailed (unknown status), UserNotFound.
    """
    if status not in SUBSCRIPTION_STATUSES:
        raise ValidationFailed(f"Unknown subscription status {status!r}.")
    user = lock_user(user_id)
    previous = user.subscription_status
    if previous == status:
        return None
    user.subscription_status = status
    return _post(
        user,
        kind=LedgerKind.ADJUST,
        amount=0,
        source="subscription",
        actor_id=actor_id,
        metadata={"reason": reason, "from": previous, "to": status, **(details or {})},
    )


def encode_cursor(transaction_id: int) -> str:
    return base64.urlsafe_b64encode(f"tx:{transaction_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Raises ValidationFailed for a cursor this service did not hand out."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        prefix, _, value = text.partition(":")
        if prefix != "tx" or not value.isdigit():
            raise ValueError(text)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed("The cursor is not valid.", field="cursor") from None


def get_credit_history(user_id: int, cursor: str | None = None, limit: int = 20) -> HistoryPage:
    """Return the user's ledger rows, newest first, a page at a time.

    Raises ValidationFailed (bad cursor or limit), UserNotFound.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_HISTORY_PAGE}.", field="limit")
    if db.session.get(User, user_id) is None:
        raise UserNotFound()
    query = select(CreditTransaction).where(CreditTransaction.user_id == user_id)
    if cursor:
        query = query.where(CreditTransaction.id < decode_cursor(cursor))
    rows = db.session.execute(
        query.order_by(CreditTransaction.id.desc()).limit(limit + 1)
    ).scalars().all()
    items = list(rows[:limit])
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
    return HistoryPage(items, next_cursor)


def latest_entry_id(user_id: int) -> int:
    """The id of the user's newest ledger row (0 if none)."""
    return db.session.execute(
        select(func.coalesce(func.max(CreditTransaction.id), 0))
        .where(CreditTransaction.user_id == user_id)
    ).scalar_one()


def ledger_balance(user_id: int) -> int:
    """The balance the ledger says the user has: the sum of their amounts."""
    return db.session.execute(
        select(func.coalesce(func.sum(CreditTransaction.amount), 0))
        .where(CreditTransaction.user_id == user_id)
    ).scalar_one()
