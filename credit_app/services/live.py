"""Live credit updates: after a commit, one Redis message per changed user (the spec's
CreditUpdateMessage), fanned out to every websocket of that user in any process on any host.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from credit_app.platform import after_commit
from credit_app.platform.redis_client import get_redis

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "credit_app:credits:"
MESSAGE_TYPES = {
    "consume": "CREDIT_CONSUMED",
    "reserve": "CREDIT_CONSUMED",
    "grant": "CREDIT_GRANTED",
    "release": "CREDIT_RELEASED",
    "adjust": "PLAN_CHANGED",
    "expire": "CREDIT_EXPIRED",
}


def channel_for(user_id: int) -> str:
    return f"{CHANNEL_PREFIX}{user_id}"


def credit_update(
    kind: str,
    user_id: int,
    remaining: int,
    total: int,
    plan: str,
    feature: str | None,
    ledger_id: int,
) -> dict[str, Any]:
    """The message for one change: the spec's fields, what the counter needs to render, and
    the ledger row's id, so that a socket never shows an older state after a newer one."""
    return {
        "type": MESSAGE_TYPES[kind],
        "user_id": str(user_id),
        "remaining_credits": remaining,
        "feature": feature,
        "total": total,
        "subscription_status": plan,
        "ledger_id": ledger_id,
    }


def publish_after_commit(message: dict[str, Any]) -> None:
    """Publish `message` once the current transaction commits; the last change per user
    wins."""
    after_commit.defer("live")[message["user_id"]] = message


def _publish(pending: dict[str, dict[str, Any]]) -> None:
    """One round trip for every changed user: a plain PUBLISH for the usual one (a pipeline
    costs several times its CPU), a pipeline for more. Raises redis.RedisError (the
    dispatcher logs it; clients resynchronise when the hub reconnects, and poll meanwhile)."""
    if len(pending) == 1:
        [(user_id, message)] = pending.items()
        get_redis().publish(channel_for(int(user_id)), json.dumps(message))
        return
    pipeline = get_redis().pipeline(transaction=False)
    for user_id, message in pending.items():
        pipeline.publish(channel_for(int(user_id)), json.dumps(message))
    pipeline.execute()


after_commit.register("live", dict, _publish, uses_redis=True)
