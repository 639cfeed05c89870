"""The current time, timezone-aware, from one place (tests pass `now` explicitly instead)."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
