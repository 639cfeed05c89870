"""Every background job, declared once: its queue, time limit, retry policy and period.

Modelled on redash's `periodic_job_definitions`: the worker starts the periodic ones from
here, views and services enqueue by name (after their transaction commits), and the
recovery job derives from here how long work may wait before it counts as stranded.
Functions are named by dotted path, so that this module imports no job module (they import
it to enqueue).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rq import Queue, Retry

from credit_app.platform.redis_client import get_redis

Seconds = int | str  # a number of seconds, or the config key that holds it

# Every rq queue, in the order a worker takes work from them (rq's worker always takes the
# next job from the first non-empty queue of its list). Generations of a Pro user past the
# fair-use mark of the day (PRO_FAIR_USE_DAILY_GENERATIONS) go to GENERATION_FAIR_USE_QUEUE,
# read after every other queue: they run whenever nobody else's work waits, never refused.
GENERATION_QUEUE = "generations"
GENERATION_FAIR_USE_QUEUE = "generations_fair_use"
QUEUE_NAMES: tuple[str, ...] = (
    "maintenance",
    "webhooks",
    GENERATION_QUEUE,
    "analytics",
    "default",
    GENERATION_FAIR_USE_QUEUE,
)


@dataclass(frozen=True)
class JobSpec:
    name: str
    func: str
    queue: str
    timeout: Seconds
    retry_intervals: tuple[int, ...] = ()
    period: Seconds | None = None

    def seconds(self, value: Seconds, config: Mapping[str, Any]) -> int:
        return int(config[value]) if isinstance(value, str) else value

    def timeout_seconds(self, config: Mapping[str, Any]) -> int:
        return self.seconds(self.timeout, config)

    def period_seconds(self, config: Mapping[str, Any]) -> int | None:
        return None if self.period is None else self.seconds(self.period, config)

    @property
    def retry_window_seconds(self) -> int:
        """How long rq keeps retrying a failing run before giving up."""
        return sum(self.retry_intervals)

    def enqueue_options(self, config: Mapping[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {"job_timeout": self.timeout_seconds(config)}
        if self.retry_intervals:
            options["retry"] = Retry(
                max=len(self.retry_intervals), interval=list(self.retry_intervals)
            )
        return options

    def function(self) -> Callable[..., Any]:
        module, _, attribute = self.func.rpartition(".")
        return getattr(importlib.import_module(module), attribute)


JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        # A generation retries on transient database and Redis errors only (other errors fail it
        # and return its credit): 5 s, 15 s, 30 s and 60 s after the failure.
        JobSpec(
            "run_generation",
            "credit_app.jobs.generations.run_generation",
            GENERATION_QUEUE,
            timeout="GENERATION_JOB_TIMEOUT_SECONDS",
            retry_intervals=(5, 15, 30, 60),
        ),
        # The same job for a Pro user past the day's fair-use mark, on the lowest-priority queue.
        JobSpec(
            "run_generation_fair_use",
            "credit_app.jobs.generations.run_generation",
            GENERATION_FAIR_USE_QUEUE,
            timeout="GENERATION_JOB_TIMEOUT_SECONDS",
            retry_intervals=(5, 15, 30, 60),
        ),
        # The backfill of WebP thumbnails and display images for designs made before they
        # existed (`flask media backfill` enqueues it); storage outages retry it.
        JobSpec(
            "make_image_variants",
            "credit_app.jobs.generations.make_image_variants",
            "maintenance",
            timeout=120,
            retry_intervals=(10, 60, 300),
        ),
        # A failed Creem event is retried after 10 s, 30 s, 1 min, 5 min and 15 min; then it stays
        # failed, with its error on the event row, until `flask billing rerun-event`.
        JobSpec(
            "process_webhook_event",
            "credit_app.jobs.webhooks.process_webhook_event",
            "webhooks",
            timeout=120,
            retry_intervals=(10, 30, 60, 300, 900),
        ),
        # An email the SMTP server did not take is tried again after 10 s, 1 min, 5 min, 15 min
        # and 1 h; then recovery queues it again (up to jobs/recovery.py MAX_MAIL_ATTEMPTS).
        JobSpec(
            "deliver_email",
            "credit_app.jobs.mail.deliver_email",
            "default",
            timeout=60,
            retry_intervals=(10, 60, 300, 900, 3600),
        ),
        # The one-time notifications a ledger row or a subscription change calls for: each reads
        # the facts again and writes its message to the outbox once.
        JobSpec(
            "notify_balance",
            "credit_app.jobs.mail.notify_balance",
            "default",
            timeout=60,
            retry_intervals=(10, 60, 300),
        ),
        JobSpec(
            "notify_plan_change",
            "credit_app.jobs.mail.notify_plan_change",
            "default",
            timeout=60,
            retry_intervals=(10, 60, 300),
        ),
        JobSpec(
            "notify_subscription",
            "credit_app.jobs.mail.notify_subscription",
            "default",
            timeout=60,
            retry_intervals=(10, 60, 300),
        ),
        # Periodic jobs do not retry: the next period runs them again.
        JobSpec(
            "sweep_expired_reservations",
            "credit_app.jobs.credits.sweep_expired_reservations",
            "maintenance",
            timeout=120,
            period="SWEEP_INTERVAL_SECONDS",
        ),
        # Lots past their expiry give up what they hold (`expire` ledger rows); spends expire a
        # lapsed lot themselves when they meet one, so this only keeps balances honest between.
        JobSpec(
            "expire_lapsed_credits",
            "credit_app.jobs.credits.expire_lapsed_credits",
            "maintenance",
            timeout=300,
            period="CREDIT_EXPIRY_INTERVAL_SECONDS",
        ),
        # The free tier's periodic top-up (FREE_REFILL_TO; off when 0): once per user and period.
        JobSpec(
            "refill_free_credits",
            "credit_app.jobs.credits.refill_free_credits",
            "maintenance",
            timeout=600,
            period="FREE_REFILL_INTERVAL_SECONDS",
        ),
        JobSpec(
            "sweep_lapsed_subscriptions",
            "credit_app.jobs.webhooks.sweep_lapsed_subscriptions",
            "maintenance",
            timeout=120,
            period="SWEEP_INTERVAL_SECONDS",
        ),
        JobSpec(
            "requeue_stranded_work",
            "credit_app.jobs.recovery.requeue_stranded_work",
            "maintenance",
            timeout=120,
            period="SWEEP_INTERVAL_SECONDS",
        ),
        JobSpec(
            "heartbeat",
            "credit_app.jobs.heartbeat.heartbeat",
            "maintenance",
            timeout=30,
            period="WORKER_HEARTBEAT_INTERVAL_SECONDS",
        ),
        JobSpec(
            "roll_up_analytics",
            "credit_app.jobs.analytics.roll_up_analytics",
            "analytics",
            timeout=600,
            period="ANALYTICS_ROLLUP_INTERVAL_SECONDS",
        ),
        # Reads every known customer's subscriptions from Creem and repairs drift (billing/
        # reconciliation.py); one run at a time, its report on the admin page.
        JobSpec(
            "reconcile_with_creem",
            "credit_app.jobs.reconciliation.reconcile_with_creem",
            "maintenance",
            timeout=1800,
            period="CREEM_RECONCILE_INTERVAL_SECONDS",
        ),
    )
}

# The generation job of each generation queue (a generation row remembers its queue).
GENERATION_JOBS: dict[str, str] = {
    GENERATION_QUEUE: "run_generation",
    GENERATION_FAIR_USE_QUEUE: "run_generation_fair_use",
}


def job(name: str) -> JobSpec:
    """The declaration of job `name`. Raises KeyError for an undeclared job."""
    return JOBS[name]


def generation_job(queue: str) -> str:
    """The job that runs a generation recorded on `queue` (the normal one for an unknown
    queue)."""
    return GENERATION_JOBS.get(queue, "run_generation")


def periodic_jobs() -> list[JobSpec]:
    return [spec for spec in JOBS.values() if spec.period is not None]


def get_queue(name: str) -> Queue:
    """The rq queue `name` on the app's Redis client.

    Raises ValueError for a queue the worker does not listen on.
    """
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}")
    return Queue(name, connection=get_redis())
