"""What the models share: CHECK-constraint text, the timestamp columns, and the row lock.

The row lock (`lock_one`) and `read_current` are here, beside the models they read, so every
service takes a lock and re-reads a row the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, DateTime, ScalarResult, Select, func, select
from sqlalchemy.orm import MappedColumn, mapped_column

from credit_app.platform.extensions import db

M = TypeVar("M")


def in_list(column: str, values: Iterable[Any]) -> str:
    """The SQL of a CHECK constraint that `column` holds one of `values` (as strings)."""
    return f"{column} IN ({', '.join(repr(str(value)) for value in values)})"


def insert_timestamp() -> MappedColumn[datetime]:
    """A timestamp column the database sets to the time of the insert (unless one is given)."""
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


def change_timestamp() -> MappedColumn[datetime]:
    """A timestamp column set to the time of the insert, then of every ORM update of the row."""
    return mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )


def read_current(statement: Select[M]) -> ScalarResult[M]:
    """Run `statement` and return its rows as they are now in the database, also for objects
    the session loaded before.

    The session keeps one object per row (its identity map), and a query that meets a row it
    already holds returns that object with the values it was loaded with, whatever the
    statement read. After a lock was taken, those values may be stale: a concurrent
    transaction could have changed the row, committed and released the lock that this one
    then got. `populate_existing` makes the query overwrite them with what it read. Use it
    for a read whose answer a decision rests on after a lock (a row lock on the row itself,
    `lock_one`, or on the user the rows belong to).
    """
    return db.session.execute(statement.execution_options(populate_existing=True)).scalars()


def lock_one(model: type[M], *where: ColumnElement[bool]) -> M | None:
    """Lock the `model` row that matches `where` for the rest of the transaction (SELECT ...
    FOR UPDATE) and return it as it stands once locked; None when there is no such row.

    The object is refreshed even when the session had loaded the row before (`read_current`):
    otherwise a balance, a status or a count read before the lock would be acted on as if it
    were current, and a concurrent change committed while this transaction waited for the lock
    would be lost.
    Raises sqlalchemy.exc.MultipleResultsFound when `where` matches several rows.
    """
    return read_current(select(model).where(*where).with_for_update()).one_or_none()
