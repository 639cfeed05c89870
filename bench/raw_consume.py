"""The parameters of the app's own `POST_FIRST_USE_DRAW_SQL` for one one-credit consume, for
the benchmarks that run the app's statements without the app (bench/credits.py's raw SQL
ceiling, bench/lean_api.py's HTTP ceiling)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any


def consume_params(
    user_id: int, generation_id: str, feature: str, plan: str, balance_after: int
) -> dict[str, Any]:
    """POST_FIRST_USE_DRAW_SQL's parameters for spending one credit on `feature`: the ledger
    row, the balance it leaves and the consume's analytics event, as consume_credit writes
    them."""
    event = {
        "event_id": uuid.uuid4().hex,
        "event_type": "credit_consumed",
        "feature": feature,
        "plan": plan,
        "credits": 1,
        "properties": {"via": "direct"},
    }
    return {
        "user_id": user_id,
        "kind": "consume",
        "amount": -1,
        "balance_after": balance_after,
        "feature_used": feature,
        "credits_consumed": 1,
        "generation_id": generation_id,
        "reservation_id": None,
        "actor_id": None,
        "metadata": json.dumps({"plan": plan}),
        "granted": 0,
        "plan": plan,
        "events": json.dumps([event]),
        "take": 1,
        "now": datetime.now(UTC),
    }
