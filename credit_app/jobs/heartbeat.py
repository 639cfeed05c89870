"""Operations jobs: the worker heartbeat that /healthz looks for."""

from __future__ import annotations

from credit_app.jobs import job_context
from credit_app.platform.health import record_heartbeat, worker_name
from credit_app.platform.redis_client import get_redis


def heartbeat() -> str:
    """Record that this worker runs jobs; returns its name."""
    with job_context():
        name = worker_name()
        record_heartbeat(get_redis(), name)
    return name
