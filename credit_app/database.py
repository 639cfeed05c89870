"""The database pool's health check: ping a pooled connection only when it has sat idle.

SQLAlchemy's `pool_pre_ping` costs a round trip on every checkout, one in eight of a consume's
round trips. A connection in steady use proves itself with every statement, so the ping is
kept for connections that have been idle in the pool for longer than
DATABASE_PING_AFTER_IDLE_SECONDS: those are the ones a PostgreSQL restart, a failover or an
idle-connection timeout may have cut. A connection that was cut while busy fails its next
statement instead; SQLAlchemy then recycles every connection older than that failure, and the
request answers 503 + Retry-After (errors.py) like any other outage.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry

IDLE_SINCE = "idle_since"


def ping_connections_after_idle(engine: Engine, idle_seconds: float) -> None:
    """Make `engine`'s pool ping a connection before handing it out when it was idle for
    `idle_seconds` or more (0 pings every checkout, like pool_pre_ping).

    A failed ping raises DisconnectionError inside the pool, which then discards that
    connection and tries a fresh one (up to three times) before the caller sees an error.
    """
    dialect = engine.dialect

    def mark_idle(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[IDLE_SINCE] = time.monotonic()

    def ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        idle_since = record.info.get(IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc

    event.listen(engine, "connect", mark_idle)
    event.listen(engine, "checkin", mark_idle)
    event.listen(engine, "checkout", ping_if_idle)
