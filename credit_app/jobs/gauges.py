"""Gauges of the background work for /metrics (credit_app/platform/metrics.py), read at
scrape time: rq queue depths, failed and running jobs and workers (from Redis), and from the
database the webhook processing lag (age of the oldest unprocessed event; mean lag over the
last hour) and the analytics backlog. The web layer registers them with the metrics."""

from __future__ import annotations

from datetime import timedelta

import redis
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry
from sqlalchemy import func, select

from credit_app.jobs.registry import QUEUE_NAMES
from credit_app.models import AnalyticsEvent, WebhookEvent
from credit_app.platform.clock import utcnow
from credit_app.platform.extensions import db
from credit_app.platform.metrics import metric_family, metric_labels


def queue_gauges(connection: redis.Redis) -> list[str]:
    """Each rq queue's waiting, failed and running jobs, and the workers registered.
    Raises redis.RedisError when Redis does not answer."""
    depth, failed, started = [], [], []
    for name in QUEUE_NAMES:
        queue = Queue(name, connection=connection)
        depth.append(f"rq_queue_depth{metric_labels(queue=name)} {queue.count}")
        failed.append(
            f"rq_failed_jobs{metric_labels(queue=name)} {FailedJobRegistry(queue=queue).count}"
        )
        started.append(
            f"rq_started_jobs{metric_labels(queue=name)} {StartedJobRegistry(queue=queue).count}"
        )
    return [
        *metric_family("rq_queue_depth", "gauge", "Jobs waiting in each rq queue.", depth),
        *metric_family("rq_failed_jobs", "gauge", "Jobs in each queue's failed registry.", failed),
        *metric_family("rq_started_jobs", "gauge", "Jobs running from each queue.", started),
        *metric_family(
            "rq_workers",
            "gauge",
            "rq workers registered.",
            [f"rq_workers {Worker.count(connection=connection)}"],
        ),
    ]


def backlog_gauges() -> list[str]:
    """The webhook events waiting and their lag, and the analytics events not rolled up.
    Raises sqlalchemy's errors when the database fails."""
    now = utcnow()
    oldest = db.session.execute(
        select(func.min(WebhookEvent.received_at)).where(WebhookEvent.processed_at.is_(None))
    ).scalar_one()
    pending = db.session.execute(
        select(func.count()).select_from(WebhookEvent).where(WebhookEvent.processed_at.is_(None))
    ).scalar_one()
    mean_lag = db.session.execute(
        select(
            func.avg(func.extract("epoch", WebhookEvent.processed_at - WebhookEvent.received_at))
        ).where(WebhookEvent.processed_at >= now - timedelta(hours=1))
    ).scalar_one()
    backlog = db.session.execute(
        select(func.count())
        .select_from(AnalyticsEvent)
        .where(AnalyticsEvent.rolled_up_at.is_(None))
    ).scalar_one()
    oldest_age = (now - oldest).total_seconds() if oldest is not None else 0.0
    return [
        *metric_family(
            "webhook_events_pending",
            "gauge",
            "Webhook events not processed yet.",
            [f"webhook_events_pending {pending}"],
        ),
        *metric_family(
            "webhook_oldest_pending_age_seconds",
            "gauge",
            "Age of the oldest unprocessed webhook event (0 when none).",
            [f"webhook_oldest_pending_age_seconds {oldest_age:.3f}"],
        ),
        *metric_family(
            "webhook_processing_lag_seconds",
            "gauge",
            "Mean time from receipt to processing of webhook events in the last hour.",
            [f"webhook_processing_lag_seconds {float(mean_lag or 0):.3f}"],
        ),
        *metric_family(
            "analytics_events_pending",
            "gauge",
            "Analytics events not rolled up yet.",
            [f"analytics_events_pending {backlog}"],
        ),
    ]
