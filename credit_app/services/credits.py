"""The credit service: every read and change of a user's credits goes through here.

Rules kept in this one module:
- Each change of `users.credits_remaining` writes one ledger row in the same transaction
  (`_post`), so the balance always equals the sum of the user's ledger amounts.
- Every mutation first locks the user's row (`SELECT ... FOR UPDATE`), which serialises
  concurrent spends of one user and fixes the lock order (user, then reservation).
- A `generation_id` makes a spend idempotent: a retry returns the first outcome.
- Pro users are never blocked; their uses are still written, with amount 0.

Services flush and never commit: the caller (a request or a job) owns the transaction.

The hot path is lean on purpose (bench/load.py measures it): a spend is three statements —
lock the balance, look up the generation id, then one `POST_DRAW_SQL` statement that writes the
ledger row, the new balance, the analytics events and the draw on the lots together — all
fixed SQL text that psycopg prepares once per connection, and no ORM object (so a spend can run
in a fixed transaction, database.fixed_transaction, as the API's consume does). A `User`
already loaded in the session is kept in step (`_sync_loaded_user`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from credit_app.errors import (
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAmount,
    PackNotGranted,
    ReservationExpired,
    ReservationNotFound,
    ReservationNotPending,
    UnknownFeature,
    UserNotFound,
    ValidationFailed,
)
from credit_app.generation.features import FEATURES, Feature
from credit_app.models import (
    SUBSCRIPTION_STATUSES,
    CreditLot,
    CreditRefill,
    CreditReservation,
    CreditTransaction,
    LedgerKind,
    LotSource,
    Posting,
    ReservationStatus,
    User,
)
from credit_app.models.base import lock_one, read_current
from credit_app.platform.clock import utcnow
from credit_app.platform.database import execute_fixed, existing_session
from credit_app.platform.extensions import db
from credit_app.services import ledger_observers, live, rollout
from credit_app.services.limits import MAX_GENERATION_ID_LENGTH, MAX_GRANT, MAX_HISTORY_PAGE
from credit_app.services.paging import Page, decode_cursor, newest_first

if TYPE_CHECKING:
    from credit_app.services.accounts import Account

log = logging.getLogger(__name__)

MAX_BALANCE = 1_000_000_000
MAX_EXPIRY_LINES = 3
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
    """What a spend did. A replay (the same generation id again) carries the first outcome:
    the balance that spend left and the same message, as an idempotent API should."""

    success: bool
    remaining_credits: int
    transaction_id: int
    replayed: bool

    @property
    def message(self) -> str:
        return "Credit consumed."


@dataclass(frozen=True)
class CreditCheck:
    allowed: bool
    remaining: int
    cost: int
    unlimited: bool


@dataclass(frozen=True)
class LockedBalance:
    """A user's balance columns, read under their row lock, which holds until the transaction
    ends. Duck-types the parts of `User` that pricing and the rollout read (`id`, `is_pro`)."""

    id: int
    remaining: int
    total: int
    plan: str

    @property
    def is_pro(self) -> bool:
        return self.plan == "pro"


@dataclass(frozen=True)
class PostedEntry:
    """The ledger row `_post` wrote."""

    id: int
    balance_after: int


LOCK_BALANCE_SQL = (
    "SELECT credits_remaining, credits_total, subscription_status FROM users "
    "WHERE id = %(user_id)s FOR UPDATE"
)
# After the lock, in a statement of its own so that it sees what a concurrent request with
# the same id committed while this one waited for the lock. At most one row of each kind
# exists (unique indexes on user, generation id and kind).
PRIOR_USE_SQL = (
    "SELECT spent.id, spent.feature_used, spent.balance_after, spent.reservation_id, held.id "
    "FROM (SELECT 1) AS one "
    "LEFT JOIN credit_transactions AS spent ON spent.user_id = %(user_id)s "
    "AND spent.generation_id = %(generation_id)s AND spent.kind = 'consume' "
    "LEFT JOIN credit_reservations AS held ON held.user_id = %(user_id)s "
    "AND held.generation_id = %(generation_id)s"
)
# One round trip for the ledger row, the balance it leaves, the analytics events it implies
# (services/ledger_observers.py) and the lot movements it makes, so all of them stand or fall
# together. `{before}` reads lots (a spend's live lots, a release's movements to give back),
# `{guard}` decides whether the row is written at all (a spend only when the live lots cover
# it), `{after}` moves the lots; the statement returns the row's id and how much it moved,
# or no row when the guard said no (and then it wrote nothing).
_POST_TEMPLATE = """
WITH {before}entry AS (
    INSERT INTO credit_transactions (user_id, kind, amount, balance_after, feature_used,
                                     credits_consumed, generation_id, reservation_id, actor_id,
                                     metadata)
    SELECT %(user_id)s, %(kind)s, %(amount)s, %(balance_after)s, %(feature_used)s,
           %(credits_consumed)s, %(generation_id)s, %(reservation_id)s, %(actor_id)s,
           CAST(%(metadata)s AS jsonb)
    WHERE {guard}
    RETURNING id
), balance AS (
    UPDATE users
    SET credits_remaining = %(balance_after)s,
        credits_total = credits_total + %(granted)s,
        credits_granted_at = CASE WHEN %(granted)s > 0 THEN now() ELSE credits_granted_at END,
        subscription_status = %(plan)s,
        updated_at = now()
    WHERE id = %(user_id)s AND EXISTS (SELECT 1 FROM entry)
), events AS (
    INSERT INTO analytics_events (event_id, event_type, user_id, feature, credits_remaining,
                                  properties, plan, credits, transaction_id)
    SELECT e.event_id, e.event_type, %(user_id)s, e.feature, %(balance_after)s, e.properties,
           e.plan, e.credits, entry.id
    FROM entry, jsonb_to_recordset(CAST(%(events)s AS jsonb))
         AS e(event_id text, event_type text, feature text, properties jsonb, plan text,
              credits integer)
){after}
SELECT id, {moved} FROM entry
"""
# The spend order: lots that expire first, purchased lots last (then the oldest first).
SPEND_ORDER = "purchased, expires_at NULLS LAST, id"
POST_ENTRY_SQL = _POST_TEMPLATE.format(before="", guard="true", after="", moved="0")
# A spend takes `take` credits from the live lots in spend order, if they cover it.
_DRAW_PARTS = dict(
    before=f"""live AS (
    SELECT id, remaining, sum(remaining) OVER (ORDER BY {SPEND_ORDER}) - remaining AS before
    FROM credit_lots
    WHERE user_id = %(user_id)s AND remaining > 0
      AND (expires_at IS NULL OR expires_at > %(now)s)
), """,
    guard="(SELECT coalesce(sum(remaining), 0) FROM live) >= %(take)s",
    after=""", drawn AS (
    UPDATE credit_lots AS lot
    SET remaining = lot.remaining - least(live.remaining, %(take)s - live.before)
    FROM live, entry
    WHERE lot.id = live.id AND live.before < %(take)s
    RETURNING lot.id, least(live.remaining, %(take)s - live.before) AS taken,
              entry.id AS entry_id
), moved AS (
    INSERT INTO credit_lot_movements (lot_id, transaction_id, amount)
    SELECT id, entry_id, -taken FROM drawn
)""",
    moved="(SELECT coalesce(sum(taken), 0) FROM drawn)",
)
POST_DRAW_SQL = _POST_TEMPLATE.format(**_DRAW_PARTS)
# A consume with a generation id writes its row only if the id has no consume row and no hold
# yet: the look-up rides in the write's guard instead of a statement of its own. The write is
# a statement after the balance lock, so it sees what a concurrent request with the same id
# committed while this one waited for the lock (every use of an id takes that lock first).
# When the guard says no, consume_credit reads the id's prior use (PRIOR_USE_SQL) to answer.
# (The id is cast to varchar, the type the INSERT gives the same parameter.)
_UNUSED_GENERATION = (
    "NOT EXISTS (SELECT 1 FROM credit_transactions WHERE user_id = %(user_id)s "
    "AND generation_id = CAST(%(generation_id)s AS varchar) AND kind = 'consume') "
    "AND NOT EXISTS (SELECT 1 FROM credit_reservations WHERE user_id = %(user_id)s "
    "AND generation_id = CAST(%(generation_id)s AS varchar))"
)
POST_FIRST_USE_DRAW_SQL = _POST_TEMPLATE.format(
    **{**_DRAW_PARTS, "guard": f"{_DRAW_PARTS['guard']} AND {_UNUSED_GENERATION}"}
)
POST_FIRST_USE_ENTRY_SQL = _POST_TEMPLATE.format(
    before="", guard=_UNUSED_GENERATION, after="", moved="0"
)
# A grant opens a lot holding what it granted.
POST_OPEN_SQL = _POST_TEMPLATE.format(
    before="",
    guard="true",
    after=""", opened AS (
    INSERT INTO credit_lots (user_id, source, granted, remaining, expires_at, purchased,
                             creem_order_id, product_id, transaction_id)
    SELECT %(user_id)s, %(lot_source)s, %(amount)s, %(amount)s, %(expires_at)s, %(purchased)s,
           %(creem_order_id)s, %(product_id)s, entry.id
    FROM entry
    RETURNING id, transaction_id
), moved AS (
    INSERT INTO credit_lot_movements (lot_id, transaction_id, amount)
    SELECT id, transaction_id, %(amount)s FROM opened
)""",
    moved="(SELECT %(amount)s FROM opened)",
)
# A release gives the held credits back to the lots the hold took them from.
POST_RESTORE_SQL = _POST_TEMPLATE.format(
    before="""back AS (
    SELECT lot_id, -sum(amount) AS amount FROM credit_lot_movements
    WHERE transaction_id = (SELECT id FROM credit_transactions
                            WHERE reservation_id = %(restore_from)s AND kind = 'reserve')
    GROUP BY lot_id
), """,
    guard="(SELECT coalesce(sum(amount), 0) FROM back) = %(amount)s",
    after=""", restored AS (
    UPDATE credit_lots AS lot SET remaining = lot.remaining + back.amount
    FROM back, entry
    WHERE lot.id = back.lot_id
    RETURNING lot.id, back.amount, entry.id AS entry_id
), moved AS (
    INSERT INTO credit_lot_movements (lot_id, transaction_id, amount)
    SELECT id, entry_id, amount FROM restored
)""",
    moved="(SELECT coalesce(sum(amount), 0) FROM restored)",
)
# An expiry or a pack refund takes `take` credits from one lot.
POST_TAKE_SQL = _POST_TEMPLATE.format(
    before="",
    guard="(SELECT remaining FROM credit_lots WHERE id = %(lot_id)s "
    "AND user_id = %(user_id)s) >= %(take)s",
    after=""", taken AS (
    UPDATE credit_lots AS lot SET remaining = lot.remaining - %(take)s
    FROM entry WHERE lot.id = %(lot_id)s
    RETURNING lot.id, entry.id AS entry_id
), moved AS (
    INSERT INTO credit_lot_movements (lot_id, transaction_id, amount)
    SELECT id, entry_id, -%(take)s FROM taken
)""",
    moved="(SELECT count(*) FROM taken) * %(take)s",
)
LAPSED_LOTS_SQL = (
    "SELECT id, remaining, expires_at, source FROM credit_lots "
    "WHERE user_id = %(user_id)s AND remaining > 0 AND expires_at <= %(now)s "
    "ORDER BY expires_at, id"
)
RESERVE_MOVEMENTS_SQL = (
    "SELECT count(*) FROM credit_lot_movements WHERE transaction_id = "
    "(SELECT id FROM credit_transactions WHERE reservation_id = %(reservation_id)s "
    "AND kind = 'reserve')"
)
RESOLVE_RESERVATION_SQL = (
    "UPDATE credit_reservations SET status = %(status)s, resolved_at = %(resolved_at)s "
    "WHERE id = %(reservation_id)s"
)
READ_CREDITS_SQL = (
    "SELECT credits_remaining, credits_total, subscription_status, updated_at FROM users "
    "WHERE id = %(user_id)s"
)


def _execute(sql: str, params: dict[str, Any]) -> psycopg.Cursor:
    """Run one of this module's statements (database.execute_fixed).

    Raises sqlalchemy.exc.DBAPIError's subclass for the driver's error.
    """
    return execute_fixed((sql, params))[0]


def _only_row(cursor: psycopg.Cursor) -> tuple[Any, ...]:
    """The row of a statement that always returns exactly one (an aggregate, or a join onto
    `(SELECT 1)`). Raises LookupError when it returned none."""
    row = cursor.fetchone()
    if row is None:
        raise LookupError("The statement returned no row.")
    return row


def get_feature(feature: str) -> Feature:
    """Return the feature definition. Raises UnknownFeature."""
    try:
        return FEATURES[feature]
    except (KeyError, TypeError):
        raise UnknownFeature(
            f"Unknown feature {feature!r}; expected one of: {', '.join(FEATURES)}.",
        ) from None


def cost_for(user: User | LockedBalance, feature: Feature) -> int:
    """What a use of `feature` takes from `user`'s balance: nothing for Pro, and nothing for a
    free user outside the enforcement rollout (services/rollout.py; the use is still recorded).
    """
    if user.is_pro or not rollout.is_enforced(user.id):
        return 0
    return feature.cost


def _validate_generation_id(generation_id: str) -> str:
    if not isinstance(generation_id, str) or not (
        1 <= len(generation_id) <= MAX_GENERATION_ID_LENGTH
    ):
        raise ValidationFailed(
            f"generation_id must be a string of 1 to {MAX_GENERATION_ID_LENGTH} characters."
        )
    if not generation_id.isprintable():
        raise ValidationFailed("generation_id must contain printable characters only.")
    return generation_id


def lock_user(user_id: int) -> User:
    """Lock and return the user's row (as a model) for the rest of the transaction.

    For callers that change the user's other columns; credit changes use `_lock_balance`.
    Raises UserNotFound.
    """
    user = lock_one(User, User.id == user_id)
    if user is None:
        raise UserNotFound()
    return user


def _lock_balance(user_id: int) -> LockedBalance:
    """Lock the user's row for the rest of the transaction and read its balance.

    Raises UserNotFound.
    """
    return _locked_balance(user_id, _execute(LOCK_BALANCE_SQL, {"user_id": user_id}))


def _locked_balance(user_id: int, cursor: psycopg.Cursor) -> LockedBalance:
    row = cursor.fetchone()
    if row is None:
        raise UserNotFound()
    return LockedBalance(user_id, row[0], row[1], row[2])


@dataclass(frozen=True, slots=True)
class PriorSpend:
    """The consume row a generation id already wrote for a user: a direct spend, or a
    settled hold's (then `reservation_id` is the hold's)."""

    id: int
    feature: str
    balance_after: int
    reservation_id: int | None


@dataclass(frozen=True, slots=True)
class PriorUse:
    """What a generation id already did for a user: a direct or settled spend (`spent`) and a
    hold (`reservation_id`), either, both or neither."""

    spent: PriorSpend | None
    reservation_id: int | None

    @property
    def used(self) -> bool:
        return self.spent is not None or self.reservation_id is not None


class _GenerationUsed(Exception):
    """`_post` wrote nothing: its generation id already has a spend or a hold (`prior`)."""

    def __init__(self, prior: PriorUse) -> None:
        super().__init__("generation id already used")
        self.prior = prior


def _lock_balance_and_prior_use(user_id: int, generation_id: str) -> tuple[LockedBalance, PriorUse]:
    """Lock the user's balance, then say what `generation_id` already did for this user (no
    ORM object). The look-up is a statement of its own, after the lock, so it sees what a
    concurrent request with the same id committed while this one waited for the lock.

    Raises UserNotFound.
    """
    params = {"user_id": user_id, "generation_id": generation_id}
    lock, prior = execute_fixed((LOCK_BALANCE_SQL, params), (PRIOR_USE_SQL, params))
    return _locked_balance(user_id, lock), _prior_use_of(prior)


def _prior_use(user_id: int, generation_id: str) -> PriorUse:
    """What `generation_id` already did for this user, read under the balance lock the caller
    holds."""
    params = {"user_id": user_id, "generation_id": generation_id}
    return _prior_use_of(_execute(PRIOR_USE_SQL, params))


def _prior_use_of(cursor: psycopg.Cursor) -> PriorUse:
    spent_id, feature, balance_after, spent_reservation_id, reservation_id = _only_row(cursor)
    spent = (
        PriorSpend(spent_id, feature, balance_after, spent_reservation_id)
        if spent_id is not None
        else None
    )
    return PriorUse(spent, reservation_id)


def _sync_loaded_user(user_id: int, **columns: Any) -> None:
    """Keep a `User` this session already loaded (say `current_user`) equal to the row the
    Core statements changed, without marking it dirty."""
    session = existing_session()
    if session is None:
        return
    user = session.identity_map.get(identity_key(User, user_id))
    if user is None:
        return
    for name, value in columns.items():
        set_committed_value(user, name, value)
    session.expire(user, ["updated_at", "credits_granted_at"])


@dataclass(frozen=True)
class LotChange:
    """What a ledger row does to the user's lots (see `_post`). Build with the class methods;
    `None` for `_post` means: a spend draws in spend order, a zero amount touches no lot."""

    mode: str
    source: str | None = None
    expires_at: datetime | None = None
    purchased: bool = False
    creem_order_id: str | None = None
    product_id: str | None = None
    restore_from: int | None = None
    lot_id: int | None = None

    @classmethod
    def open(
        cls,
        source: str,
        expires_at: datetime | None = None,
        *,
        purchased: bool = False,
        creem_order_id: str | None = None,
        product_id: str | None = None,
    ) -> LotChange:
        """A new lot of the row's amount."""
        return cls(
            "open",
            source=source,
            expires_at=expires_at,
            purchased=purchased,
            creem_order_id=creem_order_id,
            product_id=product_id,
        )

    @classmethod
    def restore(cls, reservation_id: int) -> LotChange:
        """Give back to the lots what the `reserve` row of reservation `reservation_id` took
        from them."""
        return cls("restore", restore_from=reservation_id)

    @classmethod
    def take(cls, lot_id: int) -> LotChange:
        """Take the row's amount from one lot."""
        return cls("take", lot_id=lot_id)


_NO_LOTS = LotChange("none")
_DRAW = LotChange("draw")
_FIRST_USE_POST_SQL = {"none": POST_FIRST_USE_ENTRY_SQL, "draw": POST_FIRST_USE_DRAW_SQL}
_POST_SQL = {
    "none": POST_ENTRY_SQL,
    "draw": POST_DRAW_SQL,
    "open": POST_OPEN_SQL,
    "restore": POST_RESTORE_SQL,
    "take": POST_TAKE_SQL,
}


class LotsOutOfStep(RuntimeError):
    """The lots do not cover a change the balance allows: an invariant is broken (the ledger
    audit names it). The transaction must be rolled back."""


def _post(
    balance: LockedBalance,
    *,
    kind: LedgerKind,
    amount: int,
    source: str,
    credits_consumed: int = 0,
    generation_id: str | None = None,
    reservation_id: int | None = None,
    charged: int | None = None,
    plan: str | None = None,
    actor_id: int | None = None,
    metadata: dict | None = None,
    lots: LotChange | None = None,
    now: datetime | None = None,
    first_use: bool = False,
) -> PostedEntry:
    """Change a locked balance by `amount` (and the plan to `plan`), writing the ledger row,
    the analytics events it implies and its lot movements in the same statement.
    With `first_use` (a consume's spend), only if `generation_id` has no consume row and no
    hold yet; else _GenerationUsed is raised, carrying its prior use.

    A spend (negative amount, no `lots`) draws from the lots live at `now` in spend order;
    when they do not cover it because some lots lapsed and the expiry job has not run yet,
    those lots are expired first (their `expire` rows), and the spend is tried on what is
    left. A positive amount needs `lots` (a new lot, or a release's restore).

    `charged` is what the use cost, for a consume that settles a reservation (its amount was
    taken when it was reserved). The one place a balance changes.
    Raises InsufficientCredits if the balance would go below zero, InvalidAmount above the
    maximum, LotsOutOfStep when the lots cannot carry a change the balance allows,
    _GenerationUsed (above).
    """
    if lots is None:
        if amount > 0:
            raise LotsOutOfStep("A credit must go into a lot.")
        lots = _DRAW if amount < 0 else _NO_LOTS
    if amount == 0 and lots.mode != "none":
        lots = _NO_LOTS
    new_balance = balance.remaining + amount
    if new_balance < 0:
        raise InsufficientCredits(remaining=balance.remaining)
    if new_balance > MAX_BALANCE:
        raise InvalidAmount(f"The balance may not exceed {MAX_BALANCE} credits.")
    granted = amount if kind == LedgerKind.GRANT else 0
    posting = Posting(
        user_id=balance.id,
        kind=kind,
        amount=amount,
        balance_after=new_balance,
        feature_used=source,
        credits_consumed=credits_consumed,
        generation_id=generation_id,
        reservation_id=reservation_id,
        actor_id=actor_id,
        metadata=metadata or {},
        plan_before=balance.plan,
        plan_after=plan or balance.plan,
        charged=-amount if charged is None else charged,
    )
    params = {
        "user_id": balance.id,
        "kind": kind.value,
        "amount": amount,
        "balance_after": new_balance,
        "feature_used": source,
        "credits_consumed": credits_consumed,
        "generation_id": generation_id,
        "reservation_id": reservation_id,
        "actor_id": actor_id,
        "metadata": json.dumps(posting.metadata),
        "granted": granted,
        "plan": posting.plan_after,
        "events": json.dumps(ledger_observers.events_for(posting)),
        "take": -amount,
        "now": now or utcnow(),
        "lot_source": lots.source,
        "expires_at": lots.expires_at,
        "purchased": lots.purchased,
        "creem_order_id": lots.creem_order_id,
        "product_id": lots.product_id,
        "restore_from": lots.restore_from,
        "lot_id": lots.lot_id,
    }
    row = _execute((_FIRST_USE_POST_SQL if first_use else _POST_SQL)[lots.mode], params).fetchone()
    if row is None:
        if first_use and generation_id is not None:
            prior = _prior_use(balance.id, generation_id)
            if prior.used:
                raise _GenerationUsed(prior)
        return _post_when_lots_fall_short(
            balance,
            lots,
            params,
            kind=kind,
            amount=amount,
            source=source,
            credits_consumed=credits_consumed,
            generation_id=generation_id,
            reservation_id=reservation_id,
            charged=charged,
            plan=plan,
            actor_id=actor_id,
            metadata=metadata,
        )
    entry_id, moved = row
    if moved != abs(amount):
        raise LotsOutOfStep(
            f"Ledger row {entry_id} moved {moved} lot credits for an amount of {amount}."
        )
    _sync_loaded_user(
        balance.id,
        credits_remaining=new_balance,
        credits_total=balance.total + granted,
        subscription_status=posting.plan_after,
    )
    live.publish_after_commit(
        live.credit_update(
            kind,
            balance.id,
            new_balance,
            balance.total + granted,
            posting.plan_after,
            source if source in FEATURES else None,
            entry_id,
        )
    )
    ledger_observers.after_post(entry_id, posting)
    return PostedEntry(entry_id, new_balance)


def _post_when_lots_fall_short(
    balance: LockedBalance, lots: LotChange, params: dict, **post: Any
) -> PostedEntry:
    """The guard of a `_post` statement said no (it wrote nothing): expire what lapsed and
    spend again, or put a release of a hold older than lots into a lot of its own.

    Raises InsufficientCredits, LotsOutOfStep.
    """
    if lots.mode == "draw":
        expired, _ = _expire_lapsed(balance, params["now"])
        if expired.remaining == balance.remaining:
            raise LotsOutOfStep(f"User {balance.id}'s live lots do not cover their balance.")
        return _post(expired, lots=_DRAW, now=params["now"], **post)
    if (
        lots.mode == "restore"
        and not _only_row(_execute(RESERVE_MOVEMENTS_SQL, {"reservation_id": lots.restore_from}))[0]
    ):
        return _post(balance, lots=LotChange.open(LotSource.OPENING), now=params["now"], **post)
    raise LotsOutOfStep(f"User {balance.id}'s lots cannot carry a {lots.mode} of {post['amount']}.")


def _expire_lapsed(balance: LockedBalance, now: datetime) -> tuple[LockedBalance, int]:
    """Write an `expire` row for each of the locked user's lots that lapsed by `now` with
    credits left; returns the balance after them and how many rows it wrote."""
    written = 0
    for lot_id, remaining, expires_at, source in _execute(
        LAPSED_LOTS_SQL, {"user_id": balance.id, "now": now}
    ).fetchall():
        posted = _post(
            balance,
            kind=LedgerKind.EXPIRE,
            amount=-remaining,
            source="expiry",
            lots=LotChange.take(lot_id),
            now=now,
            metadata={"lot_id": lot_id, "lot_source": source, "expires_at": expires_at.isoformat()},
        )
        balance = LockedBalance(balance.id, posted.balance_after, balance.total, balance.plan)
        written += 1
    return balance, written


def expire_lapsed_lots(now: datetime | None = None, limit: int = 500) -> int:
    """Expire the credits left in every lot past its `expires_at` (an `expire` ledger row
    each); returns how many rows it wrote. Safe to run twice or alongside spends: each
    user's lots are re-read under the user's row lock."""
    now = now or utcnow()
    user_ids = (
        db.session.execute(
            select(CreditLot.user_id)
            .where(CreditLot.remaining > 0, CreditLot.expires_at <= now)
            .group_by(CreditLot.user_id)
            .order_by(func.min(CreditLot.expires_at))
            .limit(limit)
        )
        .scalars()
        .all()
    )
    written = 0
    for user_id in user_ids:
        balance = _lock_balance(user_id)
        written += _expire_lapsed(balance, now)[1]
    return written


def _entry(posted: PostedEntry) -> CreditTransaction:
    """The model of a row `_post` wrote, for callers off the hot path that want all of it."""
    return db.session.get_one(CreditTransaction, posted.id)


def get_user_credits(user_id: int) -> UserCredits:
    """Return the user's balance. Raises UserNotFound."""
    row = _execute(READ_CREDITS_SQL, {"user_id": user_id}).fetchone()
    if row is None:
        raise UserNotFound()
    return UserCredits(user_id, row[0], row[1], row[2], row[3])


def credits_of(user: User | Account) -> UserCredits:
    """The balance of a user already read in this request (the signed-in one, or an API
    caller's account), with no query."""
    return UserCredits(
        user.id,
        user.credits_remaining,
        user.credits_total,
        user.subscription_status,
        user.updated_at,
    )


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


def consume_credit(
    user_id: int, feature: str, generation_id: str | None = None, now: datetime | None = None
) -> ConsumeResult:
    """Spend one use of `feature` at once (a reservation committed in one step), from the
    lots live at `now` (default: now).

    With a `generation_id` the call is idempotent: a repeat returns the first outcome.
    Raises UnknownFeature, ValidationFailed, UserNotFound, InsufficientCredits,
    IdempotencyConflict (the id was used for another feature or is held by a reservation).
    """
    definition = get_feature(feature)
    if generation_id is not None:
        _validate_generation_id(generation_id)
    balance = _lock_balance(user_id)
    cost = cost_for(balance, definition)
    if balance.remaining >= cost:
        try:
            entry = _post(
                balance,
                kind=LedgerKind.CONSUME,
                amount=-cost,
                source=feature,
                credits_consumed=definition.cost,
                generation_id=generation_id,
                metadata={"plan": balance.plan, **rollout.enforcement_note(balance)},
                now=now,
                first_use=generation_id is not None,
            )
        except _GenerationUsed as used:
            return _repeated_consume(used.prior, feature)
        return ConsumeResult(True, entry.balance_after, entry.id, replayed=False)
    if generation_id is not None:
        prior = _prior_use(user_id, generation_id)
        if prior.used:
            return _repeated_consume(prior, feature)
    raise InsufficientCredits(remaining=balance.remaining, feature=feature)


def _repeated_consume(prior: PriorUse, feature: str) -> ConsumeResult:
    """The answer to a consume whose generation id was used before: the first outcome again,
    when that was a direct spend of the same feature.

    Raises IdempotencyConflict for another feature, or an id that belongs to a hold.
    """
    spent = prior.spent
    if spent is not None and spent.reservation_id is None:
        if spent.feature != feature:
            raise IdempotencyConflict()
        return ConsumeResult(True, spent.balance_after, spent.id, replayed=True)
    raise IdempotencyConflict("That generation id belongs to a reserved generation.")


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
    balance, prior = _lock_balance_and_prior_use(user_id, generation_id)
    if prior.reservation_id is not None:
        reservation = db.session.get_one(CreditReservation, prior.reservation_id)
        if reservation.feature != feature:
            raise IdempotencyConflict()
        return reservation
    if prior.spent is not None:
        raise IdempotencyConflict("That generation id was already consumed directly.")
    cost = cost_for(balance, definition)
    if balance.remaining < cost:
        raise InsufficientCredits(remaining=balance.remaining, feature=feature)
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
    try:
        _post(
            balance,
            kind=LedgerKind.RESERVE,
            amount=-cost,
            source=feature,
            generation_id=generation_id,
            reservation_id=reservation.id,
            metadata={
                "plan": balance.plan,
                "expires_at": reservation.expires_at.isoformat(),
                **rollout.enforcement_note(balance),
            },
            now=now,
        )
    except InsufficientCredits as exc:
        # Lapsed lots were expired on the way and what is left does not cover the hold.
        db.session.delete(reservation)
        db.session.flush()
        raise InsufficientCredits(**{**exc.details, "feature": feature}) from None
    return reservation


def _locked_reservation(
    reservation_id: int, user_id: int | None
) -> tuple[LockedBalance, CreditReservation]:
    """Lock the reservation's user (every change of a reservation happens under that lock),
    then read the reservation as it stands. Raises ReservationNotFound."""
    reservation = db.session.get(CreditReservation, reservation_id)
    if reservation is None or (user_id is not None and reservation.user_id != user_id):
        raise ReservationNotFound()
    balance = _lock_balance(reservation.user_id)
    db.session.refresh(reservation)
    return balance, reservation


def _resolve(reservation: CreditReservation, status: ReservationStatus, now: datetime) -> None:
    _execute(
        RESOLVE_RESERVATION_SQL,
        {"status": status.value, "resolved_at": now, "reservation_id": reservation.id},
    )
    set_committed_value(reservation, "status", status.value)
    set_committed_value(reservation, "resolved_at", now)


def commit_reservation(
    reservation_id: int, user_id: int | None = None, now: datetime | None = None
) -> CreditReservation:
    """Turn a hold into a spend (the generation succeeded); a repeat changes nothing.

    Raises ReservationNotFound, ReservationExpired (past its timeout: the sweeper returns the
    credit), ReservationNotPending (already released).
    """
    balance, reservation = _locked_reservation(reservation_id, user_id)
    now = now or utcnow()
    if reservation.status == ReservationStatus.COMMITTED:
        return reservation
    if reservation.status == ReservationStatus.EXPIRED or (
        reservation.is_pending and reservation.expires_at <= now
    ):
        raise ReservationExpired()
    if reservation.status != ReservationStatus.PENDING:
        raise ReservationNotPending("The reservation was released; its credit was returned.")
    _resolve(reservation, ReservationStatus.COMMITTED, now)
    _post(
        balance,
        kind=LedgerKind.CONSUME,
        amount=0,
        source=reservation.feature,
        credits_consumed=reservation.cost,
        generation_id=reservation.generation_id,
        reservation_id=reservation.id,
        charged=reservation.amount,
        metadata={"plan": balance.plan},
    )
    return reservation


def _release_locked(
    balance: LockedBalance,
    reservation: CreditReservation,
    reason: str,
    now: datetime,
    status: ReservationStatus,
) -> None:
    _resolve(reservation, status, now)
    _post(
        balance,
        kind=LedgerKind.RELEASE,
        amount=reservation.amount,
        source=reservation.feature,
        generation_id=reservation.generation_id,
        reservation_id=reservation.id,
        metadata={"reason": reason},
        lots=LotChange.restore(reservation.id),
        now=now,
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
    balance, reservation = _locked_reservation(reservation_id, user_id)
    if reservation.status in (ReservationStatus.RELEASED, ReservationStatus.EXPIRED):
        return reservation
    if reservation.status == ReservationStatus.COMMITTED:
        raise ReservationNotPending("The reservation was committed; its credit is spent.")
    _release_locked(balance, reservation, reason, now or utcnow(), ReservationStatus.RELEASED)
    return reservation


def expire_overdue_reservations(now: datetime | None = None, limit: int = 500) -> list[int]:
    """Return the credit of every pending hold past its timeout (a crashed worker's).

    Returns the ids it expired. Safe to run twice or alongside commits: each hold is
    resolved exactly once, under the user's row lock.
    """
    now = now or utcnow()
    overdue = (
        db.session.execute(
            select(CreditReservation.id)
            .where(
                CreditReservation.status == ReservationStatus.PENDING,
                CreditReservation.expires_at <= now,
            )
            .order_by(CreditReservation.expires_at)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    expired = []
    for reservation_id in overdue:
        balance, reservation = _locked_reservation(reservation_id, None)
        if reservation.is_pending and reservation.expires_at <= now:
            _release_locked(balance, reservation, "timeout", now, ReservationStatus.EXPIRED)
            expired.append(reservation_id)
    return expired


GRANT_SOURCES: tuple[str, ...] = tuple(
    source.value
    for source in LotSource
    if source not in (LotSource.OPENING, LotSource.PACK, LotSource.REFILL)
)


def grant_credits(
    user_id: int,
    amount: int,
    reason: str,
    actor_id: int | None = None,
    source: str = "admin_grant",
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> CreditTransaction:
    """Add `amount` credits to the user's balance and total, as a lot that lapses at
    `expires_at` (a promotion) or never.

    Raises InvalidAmount, ValidationFailed (empty reason, unknown source, an expiry not
    after `now`), UserNotFound.
    """
    amount, reason = _checked_amount(amount), _checked_reason(reason)
    if source not in GRANT_SOURCES:
        raise ValidationFailed(f"Unknown grant source {source!r}.")
    now = now or utcnow()
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now):
        raise ValidationFailed("The expiry must be a moment in the future.", field="expires_at")
    return _post_grant(
        _lock_balance(user_id), amount, source, reason, expires_at, actor_id=actor_id, now=now
    )


def grant_welcome_credits(user_id: int, amount: int, reason: str) -> CreditTransaction:
    """Write the sign-up's welcome row: `amount` credits, or 0 with the reason why none (a
    mailbox that had its welcome credits already), so every account's history starts alike.

    Raises InvalidAmount, ValidationFailed (empty reason), UserNotFound.
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_GRANT:
        raise InvalidAmount(
            f"The amount must be a whole number between 0 and {MAX_GRANT}.", field="amount"
        )
    reason = _checked_reason(reason)
    balance = _lock_balance(user_id)
    days = current_app.config.get("WELCOME_CREDITS_EXPIRE_DAYS", 0)
    expires_at = utcnow() + timedelta(days=days) if days else None
    return _post_grant(balance, amount, LotSource.REGISTRATION, reason, expires_at)


def _post_grant(
    balance: LockedBalance,
    amount: int,
    source: str,
    reason: str,
    expires_at: datetime | None,
    *,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> CreditTransaction:
    """Write a grant row of `amount` credits from `source` on a locked balance, as a lot that
    lapses at `expires_at` or never. The reason, and the expiry when there are credits to
    lapse, go in the row's metadata.

    Raises nothing of its own (the callers checked the amount, reason and expiry).
    """
    metadata: dict[str, Any] = {"reason": reason}
    if expires_at is not None and amount:
        metadata["expires_at"] = expires_at.isoformat()
    return _entry(
        _post(
            balance,
            kind=LedgerKind.GRANT,
            amount=amount,
            source=source,
            actor_id=actor_id,
            metadata=metadata,
            lots=LotChange.open(source, expires_at),
            now=now,
        )
    )


def remove_credits(
    user_id: int, amount: int, reason: str, actor_id: int | None = None, now: datetime | None = None
) -> CreditTransaction:
    """Take `amount` credits off the user's balance (an admin's correction, with its reason),
    from the lots live at `now` in spend order.

    Raises InvalidAmount, ValidationFailed (no reason, or more than the balance), UserNotFound,
    InsufficientCredits (more than is left once lapsed credits are expired).
    """
    amount, reason = _checked_amount(amount), _checked_reason(reason)
    balance = _lock_balance(user_id)
    if amount > balance.remaining:
        raise ValidationFailed(
            f"The user has {balance.remaining} credits; remove at most that many.", field="amount"
        )
    return _entry(
        _post(
            balance,
            kind=LedgerKind.ADJUST,
            amount=-amount,
            source="adjustment",
            actor_id=actor_id,
            metadata={"reason": reason},
            now=now,
        )
    )


def _checked_amount(amount: object) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_GRANT:
        raise InvalidAmount(
            f"The amount must be a whole number between 1 and {MAX_GRANT}.", field="amount"
        )
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
    balance = _lock_balance(user_id)
    previous = balance.plan
    if previous == status:
        return None
    return _entry(
        _post(
            balance,
            kind=LedgerKind.ADJUST,
            amount=0,
            source="subscription",
            plan=status,
            actor_id=actor_id,
            metadata={"reason": reason, "from": previous, "to": status, **(details or {})},
        )
    )


def get_credit_history(
    user_id: int, cursor: str | None = None, limit: int = 20
) -> Page[CreditTransaction]:
    """Return the user's ledger rows, newest first, a page at a time (`cursor` is the
    previous page's `next_cursor`).

    Raises ValidationFailed (bad cursor or limit), UserNotFound.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_HISTORY_PAGE}.", field="limit")
    if db.session.get(User, user_id) is None:
        raise UserNotFound()
    # A range of the (user_id, id DESC) index: a page reads the user's own rows in the index's
    # order even when their rows are the table's oldest (25 ms instead of a fraction of one).
    return newest_first(
        select(CreditTransaction),
        CreditTransaction.id,
        before=decode_cursor(cursor) if cursor else None,
        limit=limit,
        within=(CreditTransaction.user_id, user_id),
    )


@dataclass(frozen=True)
class ActivityRow:
    """One line of the user's credit history: a generation is one line however many ledger
    rows it took (its hold, then its spend or its return)."""

    entry: CreditTransaction
    outcome: str
    change: int
    unlimited: bool


def get_activity(user_id: int, cursor: str | None = None, limit: int = 20) -> Page[ActivityRow]:
    """The credit history as a person reads it, newest first: a generation's hold is shown
    only while it is pending (outcome "pending"); once resolved, the row that resolved it
    stands for the whole generation ("done" with the credit it cost, or "returned" with a net
    change of 0). `unlimited` marks a generation Pro did not charge. Other rows are "other".

    Raises ValidationFailed (bad cursor or limit), UserNotFound.
    """
    page = get_credit_history(user_id, cursor, limit)
    reservation_ids = {entry.reservation_id for entry in page.items if entry.reservation_id}
    reservations = (
        {
            reservation.id: reservation
            for reservation in db.session.execute(
                select(CreditReservation).where(CreditReservation.id.in_(reservation_ids))
            ).scalars()
        }
        if reservation_ids
        else {}
    )
    rows = []
    for entry in page.items:
        reservation = reservations.get(entry.reservation_id) if entry.reservation_id else None
        if reservation is None:
            rows.append(ActivityRow(entry, "other", entry.amount, False))
            continue
        unlimited = reservation.amount == 0
        if entry.kind == LedgerKind.RESERVE:
            if reservation.status == ReservationStatus.PENDING:
                rows.append(ActivityRow(entry, "pending", entry.amount, unlimited))
        elif entry.kind == LedgerKind.CONSUME:
            rows.append(ActivityRow(entry, "done", -reservation.amount, unlimited))
        elif entry.kind == LedgerKind.RELEASE:
            rows.append(ActivityRow(entry, "returned", 0, unlimited))
        else:
            rows.append(ActivityRow(entry, "other", entry.amount, False))
    return page.with_items(rows)


def latest_entry_id(user_id: int) -> int:
    """The id of the user's newest ledger row (0 if none)."""
    return db.session.execute(
        select(func.coalesce(func.max(CreditTransaction.id), 0)).where(
            CreditTransaction.user_id == user_id
        )
    ).scalar_one()


# -- packs and refills ----------------------------------------------------------------------


def _checked_order_id(order_id: object) -> str:
    if not isinstance(order_id, str) or not 1 <= len(order_id) <= 100:
        raise ValidationFailed(
            "order_id must be a string of 1 to 100 characters.", field="order_id"
        )
    return order_id


def _pack_lot(order_id: str) -> CreditLot | None:
    return read_current(select(CreditLot).where(CreditLot.creem_order_id == order_id)).one_or_none()


def grant_pack(
    user_id: int,
    order_id: str,
    amount: int,
    *,
    pack: str,
    product_id: str | None = None,
    event_id: str | None = None,
) -> str:
    """Grant a bought credit pack once per Creem order: a purchased lot with no expiry.

    Whichever delivery (checkout.completed, a retry, a replay) comes first grants; the
    rest find the order's lot under the user's row lock (and the unique order id is the
    backstop) and change nothing. Returns "pack_granted" or "pack_already_granted".
    Raises InvalidAmount, ValidationFailed, UserNotFound.
    """
    order_id, amount = _checked_order_id(order_id), _checked_amount(amount)
    balance = _lock_balance(user_id)
    if _pack_lot(order_id) is not None:
        return "pack_already_granted"
    _post(
        balance,
        kind=LedgerKind.GRANT,
        amount=amount,
        source="pack",
        metadata={"order_id": order_id, "pack": pack, "event_id": event_id},
        lots=LotChange.open(
            LotSource.PACK, purchased=True, creem_order_id=order_id, product_id=product_id
        ),
    )
    return "pack_granted"


@dataclass(frozen=True)
class PackRefund:
    outcome: str
    user_id: int
    taken: int
    shortfall: int


def refund_pack(
    order_id: str,
    owed: int | None = None,
    *,
    event_id: str | None = None,
    now: datetime | None = None,
) -> PackRefund:
    """Take back a refunded pack's credits: `owed` of them (all for a full refund), as many
    as are still unspent in its lot, never below zero; the rest (already spent) is recorded
    on the lot as its `refund_shortfall` for the admins. A fully refunded lot is closed (it
    lapses now, so a hold released into it later expires). A repeat changes nothing.

    Returns what it did ("pack_refunded", "pack_refund_shortfall", "pack_already_refunded").
    Raises PackNotGranted (no pack was granted for the order), ValidationFailed.
    """
    order_id, now = _checked_order_id(order_id), now or utcnow()
    lot = _pack_lot(order_id)
    if lot is None:
        raise PackNotGranted(f"No credit pack was granted for order {order_id!r}.")
    balance = _lock_balance(lot.user_id)
    db.session.refresh(lot)
    if lot.refunded_at is not None:
        return PackRefund("pack_already_refunded", lot.user_id, 0, lot.refund_shortfall)
    owed = lot.granted if owed is None else max(0, min(owed, lot.granted))
    taken = min(owed, lot.remaining)
    shortfall = owed - taken
    if taken:
        _post(
            balance,
            kind=LedgerKind.ADJUST,
            amount=-taken,
            source="pack_refund",
            metadata={
                "order_id": order_id,
                "event_id": event_id,
                "owed": owed,
                "shortfall": shortfall,
            },
            lots=LotChange.take(lot.id),
            now=now,
        )
    closed = owed == lot.granted
    db.session.execute(
        update(CreditLot)
        .where(CreditLot.id == lot.id)
        .values(
            refunded_at=now,
            refund_shortfall=shortfall,
            expires_at=now if closed else CreditLot.expires_at,
        )
    )
    db.session.expire(lot)
    if shortfall:
        log.warning(
            "pack order %s refunded: %d of its credits were spent already (user %s); "
            "flagged for the admins",
            order_id,
            shortfall,
            lot.user_id,
        )
    return PackRefund(
        "pack_refund_shortfall" if shortfall else "pack_refunded", lot.user_id, taken, shortfall
    )


def refund_shortfalls() -> list[CreditLot]:
    """Refunded packs whose credits were partly spent already, for admins, newest first."""
    return list(
        db.session.execute(
            select(CreditLot)
            .where(CreditLot.refund_shortfall > 0, CreditLot.shortfall_cleared_at.is_(None))
            .order_by(CreditLot.refunded_at.desc())
        ).scalars()
    )


def refill_period(period: str, now: datetime) -> str:
    """The key of the refill period `now` falls in: "2026-12" (monthly), "2026-W49" (weekly).
    Raises ValidationFailed for another period."""
    if period == "monthly":
        return f"{now.year:04d}-{now.month:02d}"
    if period == "weekly":
        year, week, _ = now.isocalendar()
        return f"{year:04d}-W{week:02d}"
    raise ValidationFailed(f"Unknown refill period {period!r}.")


REFILL_CLAIM_SQL = (
    "INSERT INTO credit_refills (user_id, period, amount) VALUES (%(user_id)s, %(period)s, 0) "
    "ON CONFLICT DO NOTHING RETURNING user_id"
)


def refill_free_balance(
    user_id: int, target: int, period: str, now: datetime | None = None
) -> int | None:
    """Top a free user's balance up to `target` once per refill period (the period key is
    unique per user); lapsed lots are expired first. Returns the credits granted (0 when the
    balance was there already), or None when the period was refilled before or the user is
    not on the free plan.

    Raises UserNotFound, InvalidAmount (a target over MAX_GRANT).
    """
    now = now or utcnow()
    if isinstance(target, bool) or not isinstance(target, int) or not 1 <= target <= MAX_GRANT:
        raise InvalidAmount(f"The refill target must be between 1 and {MAX_GRANT}.")
    balance = _lock_balance(user_id)
    if balance.plan != "free":
        return None
    if _execute(REFILL_CLAIM_SQL, {"user_id": user_id, "period": period}).fetchone() is None:
        return None
    balance, _ = _expire_lapsed(balance, now)
    amount = max(0, target - balance.remaining)
    if amount:
        posted = _post(
            balance,
            kind=LedgerKind.GRANT,
            amount=amount,
            source="refill",
            metadata={"period": period, "target": target},
            lots=LotChange.open(LotSource.REFILL),
            now=now,
        )
        db.session.execute(
            update(CreditRefill)
            .where(CreditRefill.user_id == user_id, CreditRefill.period == period)
            .values(amount=amount, transaction_id=posted.id)
        )
    return amount


def refill_free_users(
    target: int, period: str, now: datetime | None = None, limit: int = 500
) -> int:
    """Refill up to `limit` free users not yet refilled this period; returns how many it
    looked at (call again until 0). Safe to run twice: each user's period is claimed once."""
    now = now or utcnow()
    key = refill_period(period, now)
    user_ids = (
        db.session.execute(
            select(User.id)
            .where(
                User.subscription_status == "free",
                User.deleted_at.is_(None),
                ~select(CreditRefill.user_id)
                .where(CreditRefill.user_id == User.id, CreditRefill.period == key)
                .exists(),
            )
            .order_by(User.id)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    for user_id in user_ids:
        refill_free_balance(user_id, target, key, now)
    return len(user_ids)


def lot_summary(user_id: int, now: datetime | None = None) -> list[CreditLot]:
    """The user's lots with credits left, in spend order (the next to be spent first)."""
    now = now or utcnow()
    return list(
        db.session.execute(
            select(CreditLot)
            .where(
                CreditLot.user_id == user_id,
                CreditLot.remaining > 0,
                (CreditLot.expires_at.is_(None)) | (CreditLot.expires_at > now),
            )
            .order_by(CreditLot.purchased, CreditLot.expires_at.asc().nulls_last(), CreditLot.id)
        ).scalars()
    )


def pack_lot(order_id: str, user_id: int) -> CreditLot | None:
    """The lot the pack of Creem order `order_id` gave `user_id`, if it was granted."""
    return db.session.execute(
        select(CreditLot).where(CreditLot.creem_order_id == order_id, CreditLot.user_id == user_id)
    ).scalar_one_or_none()


def expiring_lots(user_id: int, now: datetime | None = None) -> list[CreditLot]:
    """The user's lots that will lapse with credits left, soonest first (what the sidebar
    and the history say expires when)."""
    return [lot for lot in lot_summary(user_id, now) if lot.expires_at is not None][
        :MAX_EXPIRY_LINES
    ]


def clear_refund_shortfall(order_id: str, now: datetime | None = None) -> CreditLot:
    """An admin dealt with a refunded pack's spent credits: it leaves `refund_shortfalls`.

    Raises PackNotGranted (no such pack, or no shortfall to clear).
    """
    lot = _pack_lot(_checked_order_id(order_id))
    if lot is None or not lot.refund_shortfall or lot.shortfall_cleared_at is not None:
        raise PackNotGranted(f"Order {order_id!r} has no refund shortfall to clear.")
    lot.shortfall_cleared_at = now or utcnow()
    db.session.flush()
    return lot
