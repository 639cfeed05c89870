"""The rq worker: maintenance, webhooks, generations, analytics and default jobs, plus the
periodic sweeps, the recovery of stranded work and the heartbeat."""

from __future__ import annotations

from rq import Queue, Worker

from credit_app import create_app
from credit_app.jobs import use_app
from credit_app.jobs.analytics import roll_up_analytics
from credit_app.jobs.credits import sweep_expired_reservations
from credit_app.jobs.ops import heartbeat
from credit_app.jobs.recovery import requeue_stranded_work
from credit_app.jobs.scheduler import start_periodic
from credit_app.jobs.webhooks import sweep_lapsed_subscriptions
from credit_app.redis_client import QUEUE_NAMES, get_redis


def main() -> None:
    app = create_app()
    use_app(app)
    with app.app_context():
        connection = get_redis()
        start_periodic(connection, "maintenance", sweep_expired_reservations,
                       app.config["SWEEP_INTERVAL_SECONDS"])
        start_periodic(connection, "maintenance", sweep_lapsed_subscriptions,
                       app.config["SWEEP_INTERVAL_SECONDS"])
        start_periodic(connection, "maintenance", requeue_stranded_work,
                       app.config["SWEEP_INTERVAL_SECONDS"])
        start_periodic(connection, "analytics", roll_up_analytics,
                       app.config["ANALYTICS_ROLLUP_INTERVAL_SECONDS"])
        start_periodic(connection, "maintenance", heartbeat,
                       app.config["WORKER_HEARTBEAT_INTERVAL_SECONDS"])
        queues = [Queue(name, connection=connection) for name in QUEUE_NAMES]
    Worker(queues, connection=connection).work(with_scheduler=True)


if __name__ == "__main__":
    main()
