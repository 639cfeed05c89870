"""Exports: a user's own data (ledger, generations, subscriptions) as JSON or CSV, and the
admins' CSVs of every user and every ledger row.

Rows are read with `yield_per` (a server-side cursor on psycopg), `batch` at a time, and each
batch is written out as one chunk before the next is fetched, so an export of a million
rows holds one batch in memory, never the table. Cells that a spreadsheet would run as a
formula (starting with = + - @, a tab or a carriage return) get a leading apostrophe
(OWASP's "CSV injection" advice); numbers are written as they are.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select

from credit_app.errors import UnknownExport
from credit_app.models import CreditTransaction, Generation, Subscription, User
from credit_app.platform.extensions import Model, db

FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
DEFAULT_BATCH = 1000


def csv_cell(value: Any) -> str | int | float:
    """One cell: text that starts like a formula is prefixed with an apostrophe; None is
    empty; dates are ISO 8601; dicts and lists are JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True, default=str)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


@dataclass(frozen=True)
class Dataset:
    """One exportable table: its columns and how to read one row's cells."""

    name: str
    columns: tuple[str, ...]
    cells: Callable[[Any], Sequence[Any]]


LEDGER = Dataset(
    "ledger",
    (
        "id",
        "user_id",
        "created_at",
        "kind",
        "amount",
        "balance_after",
        "feature",
        "generation_id",
        "reservation_id",
        "actor_id",
        "details",
    ),
    lambda row: (
        row.id,
        row.user_id,
        row.created_at,
        row.kind,
        row.amount,
        row.balance_after,
        row.feature_used,
        row.generation_id,
        row.reservation_id,
        row.actor_id,
        row.metadata_,
    ),
)
GENERATIONS = Dataset(
    "generations",
    (
        "id",
        "generation_id",
        "feature",
        "status",
        "queue",
        "options",
        "error_message",
        "created_at",
        "started_at",
        "finished_at",
    ),
    lambda row: (
        row.id,
        row.generation_id,
        row.feature,
        row.status,
        row.queue,
        row.options,
        row.error_message,
        row.created_at,
        row.started_at,
        row.finished_at,
    ),
)
SUBSCRIPTIONS = Dataset(
    "subscription",
    (
        "creem_subscription_id",
        "product_id",
        "status",
        "current_period_start",
        "current_period_end",
        "canceled_at",
        "created_at",
        "updated_at",
    ),
    lambda row: (
        row.creem_subscription_id,
        row.product_id,
        row.status,
        row.current_period_start,
        row.current_period_end,
        row.canceled_at,
        row.created_at,
        row.updated_at,
    ),
)
USERS = Dataset(
    "users",
    (
        "id",
        "email",
        "role",
        "plan",
        "credits_remaining",
        "credits_total",
        "verified",
        "disabled",
        "deleted",
        "created_at",
    ),
    lambda row: (
        row.id,
        row.email,
        row.role,
        row.subscription_status,
        row.credits_remaining,
        row.credits_total,
        row.email_verified_at is not None,
        row.disabled_at is not None,
        row.deleted_at is not None,
        row.created_at,
    ),
)
USER_DATASETS: dict[str, Dataset] = {
    dataset.name: dataset for dataset in (LEDGER, GENERATIONS, SUBSCRIPTIONS)
}


ExportedRow = CreditTransaction | Generation | Subscription | User
EXPORTED_MODELS: dict[str, type[ExportedRow]] = {
    "ledger": CreditTransaction,
    "generations": Generation,
    "subscription": Subscription,
    "users": User,
}


def _query(dataset: Dataset, user_id: int | None) -> Select[Model]:
    model = EXPORTED_MODELS[dataset.name]
    query = select(model).order_by(model.id)
    if user_id is not None:
        owner = model.id if issubclass(model, User) else model.user_id
        query = query.where(owner == user_id)
    return query


def stream_rows(
    dataset: Dataset, user_id: int | None = None, batch: int = DEFAULT_BATCH
) -> Iterator[list[Sequence[Any]]]:
    """The dataset's rows (one user's, or everybody's), `batch` at a time, as cells, read
    through a server-side cursor; the session forgets each batch once it is yielded."""
    result = db.session.execute(
        _query(dataset, user_id).execution_options(yield_per=batch, stream_results=True)
    )
    try:
        for partition in result.scalars().partitions():
            cells = [dataset.cells(row) for row in partition]
            for row in partition:
                db.session.expunge(row)
            yield cells
    finally:
        result.close()


def csv_chunks(columns: Iterable[str], batches: Iterable[list[Sequence[Any]]]) -> Iterator[str]:
    """CSV text: the header, then one chunk per batch of rows (cells escaped)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(list(columns))
    yield buffer.getvalue()
    for rows in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([csv_cell(value) for value in row] for row in rows)
        yield buffer.getvalue()


def dataset_csv(
    name: str,
    user_id: int | None,
    batch: int = DEFAULT_BATCH,
    datasets: dict[str, Dataset] | None = None,
) -> Iterator[str]:
    """One dataset as streamed CSV: a user's own (`user_id`) or everybody's (None).
    Raises UnknownExport for a name that is not one of `datasets` (default: the user's)."""
    dataset = (datasets or USER_DATASETS).get(name)
    if dataset is None:
        raise UnknownExport()
    return csv_chunks(dataset.columns, stream_rows(dataset, user_id, batch))


def admin_csv(name: str, batch: int = DEFAULT_BATCH) -> Iterator[str]:
    """Every user, or every ledger row, as streamed CSV. Raises UnknownExport."""
    return dataset_csv(name, None, batch, {"users": USERS, "ledger": LEDGER})


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def user_json(user_id: int, batch: int = DEFAULT_BATCH) -> Iterator[str]:
    """The user's account, ledger, generations and subscriptions as one JSON document,
    written a batch at a time."""
    user = db.session.get_one(User, user_id)
    account = {
        "id": user.id,
        "email": user.email,
        "plan": user.subscription_status,
        "credits_remaining": user.credits_remaining,
        "created_at": _json_value(user.created_at),
    }
    yield '{"account": ' + json.dumps(account)
    for dataset in (LEDGER, GENERATIONS, SUBSCRIPTIONS):
        yield f', "{dataset.name}": ['
        first = True
        for rows in stream_rows(dataset, user_id, batch):
            items = [
                json.dumps(
                    {
                        column: _json_value(value)
                        for column, value in zip(dataset.columns, row, strict=True)
                    },
                    default=str,
                )
                for row in rows
            ]
            if items:
                yield ("" if first else ", ") + ", ".join(items)
                first = False
        yield "]"
    yield "}\n"
