"""The enforcement rollout of the credit system: which free users their balance limits.

The percentage lives in `feature_flags` (row "credit_enforcement"; no row means 100 %, every
free user is limited). A user is inside the rollout when the bucket of their id — 0 to 99,
from a SHA-256 of the flag name and the id, so it is stable and evenly spread — is below the
percentage; raising it only ever adds users. Users outside are never blocked: their uses
cost 0 and are still written to the ledger, marked `"enforcement": "off"`.

Reading the flag costs at most one query per request (memoised in `flask.g`) and, across
requests, one per `ROLLOUT_CACHE_SECONDS` per process (default 5; 0 when testing). A change
clears both caches of the process that made it, again when its transaction ends; other
processes see it within the cache time.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from flask import current_app, g, has_app_context

from credit_app.errors import ValidationFailed
from credit_app.models import FeatureFlag
from credit_app.models.base import lock_one
from credit_app.platform import after_commit
from credit_app.platform.database import read_fixed
from credit_app.platform.extensions import db
from credit_app.services import audit

ENFORCEMENT_FLAG = "credit_enforcement"
DEFAULT_PERCENTAGE = 100
ROLLOUT_STEPS: tuple[int, ...] = (0, 10, 25, 50, 100)
DEFAULT_CACHE_SECONDS = 5.0
_G_KEY = "rollout_percentages"
_lock = threading.Lock()


@dataclass(frozen=True)
class RolloutChange:
    flag: str
    previous: int
    percentage: int


def bucket(user_id: int, flag: str = ENFORCEMENT_FLAG) -> int:
    """The user's fixed place, 0 to 99, in the rollout of `flag`."""
    digest = hashlib.sha256(f"{flag}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def _cache_seconds() -> float:
    return float(current_app.config.get("ROLLOUT_CACHE_SECONDS", DEFAULT_CACHE_SECONDS))


def _process_cache() -> dict[str, tuple[int, float]]:
    return current_app.extensions.setdefault("rollout_cache", {})


FLAG_SQL = "SELECT percentage FROM feature_flags WHERE name = %(flag)s"


def _load(flag: str) -> int:
    """The stored percentage, read as fixed SQL: credit spends read it, also inside a fixed
    transaction (database.fixed_transaction)."""
    row = read_fixed(FLAG_SQL, {"flag": flag}).fetchone()
    return DEFAULT_PERCENTAGE if row is None else row[0]


def percentage(flag: str = ENFORCEMENT_FLAG) -> int:
    """The rollout percentage, from the request memo, the process cache, or the database."""
    memo = g.setdefault(_G_KEY, {})
    if flag in memo:
        return memo[flag]
    ttl = _cache_seconds()
    cache = _process_cache()
    now = time.monotonic()
    with _lock:
        cached = cache.get(flag)
    if ttl > 0 and cached is not None and cached[1] > now:
        value = cached[0]
    else:
        value = _load(flag)
        if ttl > 0:
            with _lock:
                cache[flag] = (value, now + ttl)
    memo[flag] = value
    return value


def is_enforced(user_id: int, flag: str = ENFORCEMENT_FLAG) -> bool:
    """Whether the user is inside the rollout of `flag`. At 0 and 100 % (a finished rollout,
    the usual case) the answer is the same for everyone, so no bucket is hashed."""
    share = percentage(flag)
    if share >= 100:
        return True
    if share <= 0:
        return False
    return bucket(user_id, flag) < share


class PlanHolder(Protocol):
    """What the rollout reads of a user: a `User`, or the balance the credit service locked."""

    @property
    def id(self) -> int: ...

    @property
    def is_pro(self) -> bool: ...


def enforcement_note(user: PlanHolder) -> dict[str, str]:
    """Ledger metadata for a use by `user`: marks a free user's use outside the rollout."""
    if user.is_pro or is_enforced(user.id):
        return {}
    return {"enforcement": "off"}


def forget() -> None:
    """Drop this process's cached percentages (both the request memo and the process cache)."""
    if not has_app_context():
        return
    g.pop(_G_KEY, None)
    with _lock:
        _process_cache().clear()


def set_percentage(
    value: object, actor_id: int, reason: str, flag: str = ENFORCEMENT_FLAG
) -> RolloutChange:
    """Set the flag's rollout percentage and audit the change with the admin's id.

    Raises ValidationFailed for a percentage that is not a whole number from 0 to 100 or a
    missing reason.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValidationFailed(
            "The percentage must be a whole number from 0 to 100.", field="percentage"
        )
    reason = audit.clean_reason(reason)
    row = lock_one(FeatureFlag, FeatureFlag.name == flag)
    previous = DEFAULT_PERCENTAGE if row is None else row.percentage
    if row is None:
        row = FeatureFlag(name=flag, percentage=value, updated_by_id=actor_id)
        db.session.add(row)
    else:
        row.percentage = value
        row.updated_by_id = actor_id
    db.session.flush()
    audit.record(
        actor_id,
        "rollout.change",
        target=flag,
        details={"from": previous, "to": value, "reason": reason},
    )
    after_commit.defer("rollout").append(True)
    forget()
    return RolloutChange(flag, previous, value)


def _forget_after_transaction(changed: list[bool]) -> None:
    forget()


after_commit.register(
    "rollout", list, _forget_after_transaction, on_rollback=_forget_after_transaction
)
