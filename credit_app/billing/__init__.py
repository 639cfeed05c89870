"""Billing with Creem, in layers that import in one direction only:

`creem/` (the typed boundary: events and the HTTP client) → `plans` (the Pro products) →
`access` (statuses, entitlement, when access ends) → `subscriptions` (the rows, the user's
plan, cancel / resume / switch, the sweep) → `checkout` (starting a checkout, checking the
way back) → `webhooks` (storing and applying events).

Access comes from Creem's facts only: the newest snapshot of each subscription (its status,
`current_period_end_date`, `canceled_at` and product) decides, re-read from Creem's API when
an event is ambiguous, so any delivery order and any number of workers end in the same state.
"""
