"""The keyset pager every list uses (services/paging.py), on real audit and ledger rows."""

import pytest
from sqlalchemy import select

from credit_app.errors import ValidationFailed
from credit_app.models import AuditLogEntry, CreditTransaction
from credit_app.services import audit, credits, paging


def all_pages(read_page) -> list[list[int]]:
    """The ids of each page, following `next_before` until the last page."""
    pages, before = [], None
    while True:
        page = read_page(before)
        pages.append([item.id for item in page.items])
        if not page.has_more:
            return pages
        before = page.next_before


def test_pages_cover_every_row_once_newest_first(admin):
    for number in range(5):
        audit.record(admin.id, "credits.grant", details={"number": number})
    pages = all_pages(
        lambda before: paging.newest_first(
            select(AuditLogEntry), AuditLogEntry.id, before=before, limit=2
        )
    )
    assert [len(ids) for ids in pages] == [2, 2, 1]
    ids = [entry_id for ids in pages for entry_id in ids]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5


def test_a_full_last_page_says_there_is_no_more(admin):
    for number in range(4):
        audit.record(admin.id, "credits.grant", details={"number": number})
    pages = all_pages(
        lambda before: paging.newest_first(
            select(AuditLogEntry), AuditLogEntry.id, before=before, limit=2
        )
    )
    assert [len(ids) for ids in pages] == [2, 2]


def test_within_pages_one_owners_rows_only(make_user):
    alice, bob = make_user(), make_user()
    for index in range(3):
        credits.consume_credit(alice.id, "interior", f"a{index}")
        credits.consume_credit(bob.id, "interior", f"b{index}")
    pages = all_pages(
        lambda before: paging.newest_first(
            select(CreditTransaction),
            CreditTransaction.id,
            before=before,
            limit=3,
            within=(CreditTransaction.user_id, alice.id),
        )
    )
    assert [len(ids) for ids in pages] == [3, 1]
    assert pages[0][0] > pages[0][1] > pages[0][2] > pages[1][0]
    history = credits.get_credit_history(alice.id, limit=3)
    assert [entry.id for entry in history.items] == pages[0]
    assert paging.decode_cursor(history.next_cursor) == history.next_before == pages[0][-1]


def test_the_cursor_keeps_its_wire_format():
    assert paging.encode_cursor(42) == "dHg6NDI"  # base64 of "tx:42", unpadded
    assert paging.decode_cursor("dHg6NDI") == 42


@pytest.mark.parametrize("cursor", ["", "garbage", "eHg6NDI", "dHg6MA", "dHg6LTE"])
def test_a_cursor_it_did_not_hand_out_is_refused(cursor):
    with pytest.raises(ValidationFailed) as caught:
        paging.decode_cursor(cursor)
    assert caught.value.details["field"] == "cursor"


def test_presented_items_keep_the_place_in_the_list():
    page = paging.Page([3, 2], 2)
    shown = page.with_items(["three", "two"])
    assert (shown.items, shown.next_before, shown.has_more) == (["three", "two"], 2, True)
    assert shown.next_cursor == paging.encode_cursor(2)
    assert paging.Page([], None).next_cursor is None
