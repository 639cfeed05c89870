"""Who is Pro, from a subscription's own facts: its status, its product, the end of its paid
period (`current_period_end_date`) and the admins' flag (`staff_flag`). Nothing here
remembers earlier events, so the answer is the same whatever order the events came in.

- a subscription to a product that is not a configured Pro plan gives nothing;
- a refund or dispute flag gives nothing until an admin clears it;
- active and trialing give Pro, unbounded (Creem announces the next payment or its failure);
- scheduled_cancel and canceled give Pro until the end of the paid period, however the
  cancellation came (a `subscription.canceled` mid-period keeps the rest of the period);
- past_due gives Pro for PAST_DUE_GRACE_DAYS after the period end whose payment failed;
- expired, unpaid, paused and incomplete give nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app

from credit_app.billing.plans import is_pro_product
from credit_app.models import Subscription

UNBOUNDED_STATUSES = frozenset({"active", "trialing"})
PERIOD_BOUND_STATUSES = frozenset({"scheduled_cancel", "canceled"})
GRACE_STATUSES = frozenset({"past_due"})
# Statuses whose access ends at a moment the period end decides (so they need one).
BOUNDED_STATUSES = PERIOD_BOUND_STATUSES | GRACE_STATUSES


@dataclass(frozen=True)
class Access:
    """What a subscription gives: Pro (`grants`) until `until` (None: no end known yet)."""

    grants: bool
    until: datetime | None = None

    def at(self, now: datetime) -> bool:
        return self.grants and (self.until is None or now < self.until)


NO_ACCESS = Access(False)


def grace_period() -> timedelta:
    return timedelta(days=current_app.config["PAST_DUE_GRACE_DAYS"])


def access_of(subscription: Subscription) -> Access:
    """What the subscription's facts give, at any moment."""
    if subscription.staff_flag or not is_pro_product(subscription.product_id):
        return NO_ACCESS
    status, period_end = subscription.status, subscription.current_period_end
    if status in UNBOUNDED_STATUSES:
        return Access(True)
    if status in PERIOD_BOUND_STATUSES and period_end is not None:
        return Access(True, period_end)
    if status in GRACE_STATUSES:
        started = period_end or subscription.last_event_at
        return Access(True, started + grace_period()) if started else NO_ACCESS
    return NO_ACCESS


def entitled(subscription: Subscription, now: datetime) -> bool:
    """Whether this subscription makes its user Pro at `now`."""
    return access_of(subscription).at(now)


def access_end(subscription: Subscription) -> datetime | None:
    """When a time-bounded access ends (None when it is unbounded or there is none)."""
    access = access_of(subscription)
    return access.until if access.grants else None
