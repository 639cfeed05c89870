"""Running the mail jobs in the test and reading what the test SMTP server received."""

from __future__ import annotations

import re

from rq import SimpleWorker
from sqlalchemy import select

from credit_app.jobs.registry import get_queue
from credit_app.models import OutboundEmail
from credit_app.platform.extensions import db
from credit_app.platform.redis_client import get_redis

QUEUE = "default"


def empty_queue() -> None:
    get_queue(QUEUE).empty()


def run_jobs() -> None:
    """Run what the default queue holds (notification decisions, then their deliveries), in
    this process and this test's transaction, as the worker would."""
    for _ in range(3):
        if not get_queue(QUEUE).count:
            break
        SimpleWorker([get_queue(QUEUE)], connection=get_redis()).work(burst=True)
    db.session.expire_all()


def outbox(user_id: int | None = None, template: str | None = None) -> list[OutboundEmail]:
    query = select(OutboundEmail).order_by(OutboundEmail.id)
    if user_id is not None:
        query = query.where(OutboundEmail.user_id == user_id)
    if template is not None:
        query = query.where(OutboundEmail.template == template)
    return list(db.session.execute(query).scalars())


def link_path(text: str, path_prefix: str) -> str:
    """The path (from `path_prefix` on) of the first link in `text` that contains it."""
    match = re.search(re.escape(path_prefix) + r"[^\s<>\"']*", text)
    assert match, f"no {path_prefix} link in: {text}"
    return match.group(0)
