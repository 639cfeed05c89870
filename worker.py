"""The rq worker: the queues of jobs/registry.py QUEUE_NAMES in their priority order
(maintenance, webhooks, generations, analytics, default, then generations_fair_use), plus the
periodic jobs of the registry and the retry scheduler (threads of this process)."""

from __future__ import annotations

from rq import Queue, Worker

from credit_app import create_app
from credit_app.jobs import preload_for_work_horses, use_app
from credit_app.jobs.registry import QUEUE_NAMES
from credit_app.jobs.scheduler import start_schedulers
from credit_app.platform.redis_client import client_for


def main() -> None:
    app = create_app()
    use_app(app)
    preload_for_work_horses(app)
    start_schedulers(client_for(app, "app"), app.config, QUEUE_NAMES)
    blocking = client_for(app, "worker")
    queues = [Queue(name, connection=blocking) for name in QUEUE_NAMES]
    Worker(queues, connection=blocking).work(with_scheduler=False)


if __name__ == "__main__":
    main()
