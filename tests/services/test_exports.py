"""Exports: a user's own data as JSON and CSV, the admins' CSVs, streamed a batch at a time
(the session never holds more than one batch), and cells that would run as formulas
escaped."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import text

from credit_app.models import CreditTransaction, Generation
from credit_app.platform.extensions import db
from credit_app.services import credits, exports

FORMULAS = ("=1+2", "+1", "-1+2", "@SUM(A1)", "\tx", "\rx")


def rows_of(body: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body)))


def add_generation(user, generation_id: str, **columns) -> Generation:
    generation = Generation(
        user_id=user.id,
        generation_id=generation_id,
        feature="interior",
        input_path=f"{user.id}/x/input.png",
        options={"prompt": "warm"},
        **columns,
    )
    db.session.add(generation)
    db.session.flush()
    return generation


@pytest.mark.parametrize("text", FORMULAS)
def test_text_that_starts_like_a_formula_gets_an_apostrophe(text):
    assert exports.csv_cell(text) == "'" + text


@pytest.mark.parametrize(
    "value, cell",
    [
        ("plain", "plain"),
        ("a=b", "a=b"),
        (-3, -3),
        (0, 0),
        (None, ""),
        (True, "true"),
        ({"b": 1, "a": "=x"}, '{"a": "=x", "b": 1}'),
    ],
)
def test_other_cells_are_written_as_they_are(value, cell):
    assert exports.csv_cell(value) == cell


def test_a_user_downloads_their_ledger_as_csv_streamed(user_client, user, make_user):
    credits.grant_credits(user.id, 3, "a thank-you", source="admin_grant")
    credits.consume_credit(user.id, "interior")
    other = make_user()
    credits.consume_credit(other.id, "interior")
    db.session.commit()
    response = user_client.get("/settings/account/export/ledger.csv")
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    header, *rows = rows_of(response.get_data(as_text=True))
    assert header == list(exports.LEDGER.columns)
    assert {row[1] for row in rows} == {str(user.id)}
    assert [int(row[4]) for row in rows] == [6, 3, -1]  # negative numbers stay numbers
    assert sum(int(row[4]) for row in rows) == credits.get_user_credits(user.id).remaining


def test_generations_and_subscription_csv_escape_formulas(user_client, user):
    add_generation(user, "g1", status="failed", error_message='=HYPERLINK("http://x")')
    add_generation(user, "g2", status="succeeded")
    db.session.commit()
    header, *rows = rows_of(
        user_client.get("/settings/account/export/generations.csv").get_data(as_text=True)
    )
    assert header == list(exports.GENERATIONS.columns)
    errors = [row[header.index("error_message")] for row in rows]
    assert errors == ['\'=HYPERLINK("http://x")', ""]
    header, *rows = rows_of(
        user_client.get("/settings/account/export/subscription.csv").get_data(as_text=True)
    )
    assert header == list(exports.SUBSCRIPTIONS.columns) and rows == []


def test_the_json_download_has_everything_of_the_user_only(user_client, user, make_user):
    add_generation(user, "g1", status="succeeded")
    add_generation(make_user(), "theirs", status="succeeded")
    credits.consume_credit(user.id, "interior")
    db.session.commit()
    response = user_client.get("/settings/account/export.json")
    assert response.status_code == 200 and response.is_streamed
    data = json.loads(response.get_data(as_text=True))
    assert data["account"]["email"] == user.email
    assert [entry["amount"] for entry in data["ledger"]] == [6, -1]
    assert [generation["generation_id"] for generation in data["generations"]] == ["g1"]
    assert data["subscription"] == []


def test_bad_export_names_and_strangers(user_client, client):
    assert user_client.get("/settings/account/export/passwords.csv").status_code == 404
    assert user_client.get("/admin/exports/ledger.csv").status_code == 403
    stranger = client.get("/settings/account/export.json")
    assert stranger.status_code == 302
    assert stranger.headers["Location"].startswith("/login")


def test_the_account_page_links_the_downloads(user_client):
    html = user_client.get("/settings/account").get_data(as_text=True)
    assert "/settings/account/export.json" in html and "/settings/account/export/ledger.csv" in html


def test_admin_csv_of_users_escapes_addresses_that_look_like_formulas(admin_client, make_user):
    sly = make_user()
    sly.email = "=cmd|'/c calc'!A1@example.com"
    db.session.commit()
    response = admin_client.get("/admin/exports/users.csv")
    assert response.status_code == 200 and response.is_streamed
    header, *rows = rows_of(response.get_data(as_text=True))
    assert header == list(exports.USERS.columns)
    emails = {row[0]: row[1] for row in rows}
    assert emails[str(sly.id)] == "'=cmd|'/c calc'!A1@example.com"
    assert admin_client.get("/admin/exports/secrets.csv").status_code == 404


def test_the_admin_ledger_csv_streams_in_batches_and_holds_one_batch_at_a_time(
    app, admin_client, make_user, monkeypatch
):
    users = [make_user() for _ in range(6)]
    for user in users:
        for _ in range(4):
            credits.consume_credit(user.id, "interior")
    db.session.commit()
    total = db.session.query(CreditTransaction).count()
    monkeypatch.setitem(app.config, "EXPORT_BATCH_ROWS", 7)
    db.session.expunge_all()
    response = admin_client.get("/admin/exports/ledger.csv")
    assert response.is_streamed
    chunks = [chunk if isinstance(chunk, bytes) else chunk.encode() for chunk in response.response]
    response.close()
    _header, *rows = rows_of(b"".join(chunks).decode())
    assert len(rows) == total
    assert [int(row[0]) for row in rows] == sorted(int(row[0]) for row in rows)
    # The header, then one chunk per batch of 7: never the whole ledger at once.
    assert len(chunks) == 1 + -(-total // 7)
    # And while it streams, the session holds one batch of rows at most.
    held = []
    for _chunk in exports.admin_csv("ledger", batch=7):
        held.append(sum(1 for key in db.session.identity_map if key[0] is CreditTransaction))
    assert len(held) == len(chunks) and max(held) <= 7


def test_stream_rows_reads_through_a_server_side_cursor(make_user):
    user = make_user()
    for _ in range(5):
        credits.consume_credit(user.id, "interior")
    stream = exports.stream_rows(exports.LEDGER, user.id, batch=2)
    first = next(stream)
    open_cursors = db.session.execute(text("SELECT count(*) FROM pg_cursors")).scalar_one()
    rest = list(stream)
    assert open_cursors >= 1
    assert [len(batch) for batch in [first, *rest]] == [2, 2, 2]
    assert db.session.execute(text("SELECT count(*) FROM pg_cursors")).scalar_one() == 0


def test_the_users_dataset_of_one_user_is_their_own_row(make_user):
    user, other = make_user(), make_user()
    batches = list(exports.stream_rows(exports.USERS, user.id))
    assert [row[0] for batch in batches for row in batch] == [user.id]
    assert other.id != user.id
