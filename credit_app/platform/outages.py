"""What an outage of the database or Redis looks like, for the requests (503 with Retry-After,
credit_app/web/responses.py) and the jobs (retried, credit_app/jobs) alike."""

from __future__ import annotations

import redis
from sqlalchemy import exc as sa_exc

from credit_app.errors import ServiceUnavailable

# The server refuses or drops the connection, or answers "too many clients" (OperationalError,
# InterfaceError), or every pooled connection is busy past the pool timeout (TimeoutError), or
# Redis does not answer within its socket timeout (RedisError).
OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    redis.RedisError,
)


def retry_after_seconds(exc: Exception) -> int:
    """When to try again after the outage `exc` (an OUTAGE_ERRORS error or ServiceUnavailable):
    its own advice, a second for a busy pool, else two."""
    if isinstance(exc, ServiceUnavailable):
        return exc.retry_after
    return 1 if isinstance(exc, sa_exc.TimeoutError) else 2
