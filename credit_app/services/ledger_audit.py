"""Checks every invariant of the credit ledger (`flask credits audit`), read-only.

1. balance: each user's `credits_remaining` equals the sum of their ledger amounts;
2. non_negative: no balance and no `balance_after` below zero;
3. running_balance: each row's `balance_after` equals the running sum of amounts up to it;
4. overdue_reservation: no reservation still pending past its timeout (plus a grace for the
   sweeper, which runs every SWEEP_INTERVAL_SECONDS);
5. reservation_ledger: each reservation has one `reserve` row and the rows its status implies
   (committed: one consume; released or expired: one release; pending: neither);
6. idempotency: one ledger row per (user, generation id, kind) and one reservation per
   (user, generation id);
7. lot_balance: each user's live lots (`credit_lots.remaining`) sum to their balance;
8. lot_movements: each lot's `remaining` is the sum of its movements, and the movements of
   each ledger row written since lots exist (after the user's `opening` lot) sum to its
   amount;
9. lapsed_lot: no lot still holds credits past its `expires_at` (plus the same grace as for
   holds: the expiry job runs every SWEEP_INTERVAL_SECONDS);
10. pack_order: one pack lot per Creem order, each opened by its own `grant` row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text

from credit_app.models import CreditTransaction, User
from credit_app.platform.extensions import db

CHECKS: dict[str, str] = {
    "balance": """
        SELECT u.id AS user_id,
               format('balance %s but the ledger sums to %s', u.credits_remaining,
                      coalesce(s.total, 0)) AS detail
        FROM users AS u
        LEFT JOIN (SELECT user_id, sum(amount) AS total FROM credit_transactions
                   GROUP BY user_id) AS s ON s.user_id = u.id
        WHERE u.credits_remaining <> coalesce(s.total, 0)""",
    "non_negative": """
        SELECT id AS user_id, format('balance %s', credits_remaining) AS detail
        FROM users WHERE credits_remaining < 0
        UNION ALL
        SELECT user_id, format('ledger row %s has balance_after %s', id, balance_after)
        FROM credit_transactions WHERE balance_after < 0""",
    "running_balance": """
        SELECT user_id, format('ledger row %s says %s, the running sum is %s', id,
                               balance_after, running) AS detail
        FROM (SELECT id, user_id, balance_after,
                     sum(amount) OVER (PARTITION BY user_id ORDER BY id) AS running
              FROM credit_transactions) AS rows
        WHERE balance_after <> running""",
    "overdue_reservation": """
        SELECT user_id, format('reservation %s (%s) pending since %s, expired %s', id,
                               generation_id, created_at, expires_at) AS detail
        FROM credit_reservations
        WHERE status = 'pending' AND expires_at < :overdue_before""",
    "reservation_ledger": """
        SELECT r.user_id, format('reservation %s is %s with %s reserve, %s consume, %s release',
                                 r.id, r.status, reserves, consumes, releases) AS detail
        FROM credit_reservations AS r
        JOIN (SELECT reservation_id,
                     count(*) FILTER (WHERE kind = 'reserve') AS reserves,
                     count(*) FILTER (WHERE kind = 'consume') AS consumes,
                     count(*) FILTER (WHERE kind = 'release') AS releases
              FROM credit_transactions WHERE reservation_id IS NOT NULL
              GROUP BY reservation_id) AS t ON t.reservation_id = r.id
        WHERE NOT (reserves = 1 AND (
            (r.status = 'pending' AND consumes = 0 AND releases = 0)
            OR (r.status = 'committed' AND consumes = 1 AND releases = 0)
            OR (r.status IN ('released', 'expired') AND consumes = 0 AND releases = 1)))
        UNION ALL
        SELECT r.user_id, format('reservation %s has no ledger rows', r.id)
        FROM credit_reservations AS r
        WHERE NOT EXISTS (SELECT 1 FROM credit_transactions AS t
                          WHERE t.reservation_id = r.id)""",
    "idempotency": """
        SELECT user_id, format('%s ledger rows of kind %s for generation id %s', count(*),
                               kind, generation_id) AS detail
        FROM credit_transactions WHERE generation_id IS NOT NULL
        GROUP BY user_id, generation_id, kind HAVING count(*) > 1
        UNION ALL
        SELECT user_id, format('%s reservations for generation id %s', count(*),
                               generation_id)
        FROM credit_reservations GROUP BY user_id, generation_id HAVING count(*) > 1""",
    "lot_balance": """
        SELECT u.id AS user_id,
               format('balance %s but the live lots hold %s', u.credits_remaining,
                      coalesce(l.total, 0)) AS detail
        FROM users AS u
        LEFT JOIN (SELECT user_id, sum(remaining) AS total FROM credit_lots
                   GROUP BY user_id) AS l ON l.user_id = u.id
        WHERE u.credits_remaining <> coalesce(l.total, 0)""",
    "lot_movements": """
        SELECT l.user_id, format('lot %s holds %s but its movements sum to %s', l.id,
                                 l.remaining, coalesce(m.total, 0)) AS detail
        FROM credit_lots AS l
        LEFT JOIN (SELECT lot_id, sum(amount) AS total FROM credit_lot_movements
                   GROUP BY lot_id) AS m ON m.lot_id = l.id
        WHERE l.remaining <> coalesce(m.total, 0)
        UNION ALL
        SELECT t.user_id, format('ledger row %s (%s %s) moved %s lot credits', t.id, t.kind,
                                 t.amount, coalesce(m.total, 0))
        FROM credit_transactions AS t
        LEFT JOIN (SELECT transaction_id, sum(amount) AS total FROM credit_lot_movements
                   WHERE transaction_id IS NOT NULL GROUP BY transaction_id) AS m
               ON m.transaction_id = t.id
        WHERE t.amount <> coalesce(m.total, 0)
          AND t.id > coalesce((SELECT max(o.transaction_id) FROM credit_lots AS o
                               WHERE o.user_id = t.user_id AND o.source = 'opening'), 0)
        UNION ALL
        SELECT l.user_id, format('movement %s of lot %s belongs to ledger row %s of user %s',
                                 m.id, l.id, t.id, t.user_id)
        FROM credit_lot_movements AS m
        JOIN credit_lots AS l ON l.id = m.lot_id
        JOIN credit_transactions AS t ON t.id = m.transaction_id
        WHERE t.user_id <> l.user_id""",
    "lapsed_lot": """
        SELECT user_id, format('lot %s (%s) still holds %s credits, it expired %s', id,
                               source, remaining, expires_at) AS detail
        FROM credit_lots
        WHERE remaining > 0 AND expires_at < :overdue_before""",
    "pack_order": """
        SELECT l.user_id, format('pack lot %s (order %s) has no grant row of its own', l.id,
                                 l.creem_order_id) AS detail
        FROM credit_lots AS l
        LEFT JOIN credit_transactions AS t ON t.id = l.transaction_id
        WHERE l.source = 'pack' AND (l.creem_order_id IS NULL OR t.kind IS DISTINCT FROM 'grant'
                                     OR t.feature_used <> 'pack' OR t.user_id <> l.user_id)""",
}


@dataclass(frozen=True)
class Violation:
    check: str
    user_id: int
    email: str
    detail: str


@dataclass(frozen=True)
class LedgerAuditReport:
    users: int
    entries: int
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def offending_user_ids(self) -> list[int]:
        return sorted({violation.user_id for violation in self.violations})


def audit_ledger(
    grace: timedelta = timedelta(minutes=2), now: datetime | None = None
) -> LedgerAuditReport:
    """Run every check; a reservation counts as overdue `grace` after its timeout."""
    overdue_before = (now or datetime.now(UTC)) - grace
    found: list[tuple[str, int, str]] = []
    for name, sql in CHECKS.items():
        for row in db.session.execute(text(sql), {"overdue_before": overdue_before}):
            found.append((name, row.user_id, row.detail))
    emails = (
        dict(
            db.session.execute(
                select(User.id, User.email).where(User.id.in_({user_id for _, user_id, _ in found}))
            ).all()
        )
        if found
        else {}
    )
    violations = [
        Violation(name, user_id, emails.get(user_id, "?"), detail)
        for name, user_id, detail in found
    ]
    users = db.session.execute(select(func.count()).select_from(User)).scalar_one()
    entries = db.session.execute(select(func.count()).select_from(CreditTransaction)).scalar_one()
    return LedgerAuditReport(users, entries, violations)
