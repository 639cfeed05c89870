"""Keyset paging, newest first: one page of rows, and where the next page starts.

Every list that pages (the credit history, the audit log, the webhook events) is ordered by
its table's id, which grows with time, so older rows have lower ids and a page is `id <
before ORDER BY id DESC LIMIT n + 1`; the extra row only says whether there is a next page.
Unlike OFFSET, a deep page costs what the first one does, and rows added in the meantime do
not shift it.

Where the next page starts travels in one of two forms: the admin pages put the id itself in
their links (`?before=123`); the JSON API and the dashboard hand out an opaque cursor
(`next_cursor`, the URL-safe base64 of "tx:<id>", a format kept from when only the ledger
paged).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, literal, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from credit_app.errors import ValidationFailed
from credit_app.platform.extensions import db
from credit_app.services.limits import MAX_ID

T = TypeVar("T")
U = TypeVar("U")

CURSOR_PREFIX = "tx"


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, newest first; `next_before` is the id the next page reads below
    (None on the last page)."""

    items: list[T]
    next_before: int | None

    @property
    def has_more(self) -> bool:
        return self.next_before is not None

    @property
    def next_cursor(self) -> str | None:
        """Where the next page starts, as an opaque cursor (None on the last page)."""
        return encode_cursor(self.next_before) if self.next_before is not None else None

    def with_items(self, items: list[U]) -> Page[U]:
        """The same place in the list with other items (the same rows, presented)."""
        return Page(items, self.next_before)


def encode_cursor(before: int) -> str:
    return base64.urlsafe_b64encode(f"{CURSOR_PREFIX}:{before}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor from `encode_cursor` stands for.

    Raises ValidationFailed (field "cursor") for a cursor this module did not hand out.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        prefix, _, value = text.partition(":")
        if prefix != CURSOR_PREFIX or not value.isdigit() or not 1 <= int(value) <= MAX_ID:
            raise ValueError(text)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed("The cursor is not valid.", field="cursor") from None


def newest_first(
    query: Select[T],
    key: InstrumentedAttribute[int],
    *,
    before: int | None,
    limit: int,
    within: tuple[InstrumentedAttribute[Any], Any] | None = None,
) -> Page[T]:
    """The page of `query`'s rows whose `key` (the id column) is below `before` (from the
    newest when None): at most `limit` of them, the highest `key` first.

    `within=(column, value)` pages through the rows with `column = value` as a range of a
    `(column, key)` index, `(value, 0) < (column, key) < (value, before)` ordered by `column,
    key DESC`, so PostgreSQL reads that index in its order. Written as `column = value ORDER
    BY key DESC`, the query may instead walk the whole table backwards by id, filtering on
    `column`, and does when one value owns a large share of the rows and they are the oldest
    (a busy API client on the ledger, then growth).
    """
    if within is None:
        if before is not None:
            query = query.where(key < before)
        query = query.order_by(key.desc())
    else:
        column, value = within
        pair = tuple_(column, key)
        upper = MAX_ID + 1 if before is None else before
        query = query.where(
            pair > tuple_(literal(value), literal(0)), pair < tuple_(literal(value), literal(upper))
        )
        query = query.order_by(column, key.desc())
    rows = db.session.execute(query.limit(limit + 1)).scalars().all()
    items = list(rows[:limit])
    next_before = getattr(items[-1], key.key) if len(rows) > limit else None
    return Page(items, next_before)
