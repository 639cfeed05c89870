"""The local SMTP stand-in: a real SMTP server that keeps messages and shows them."""

from __future__ import annotations

import smtplib

import pytest

from credit_app.platform.mail import build_message
from credit_app.testing.mail_stand_in import Mailbox, create_page_app, start_smtp


@pytest.fixture
def stand_in():
    mailbox = Mailbox()
    controller = start_smtp(mailbox)
    yield mailbox, controller.port
    controller.stop()


def send(port: int, to: str, subject: str) -> None:
    message = build_message(
        "Roomcraft <no-reply@example.com>",
        to,
        subject,
        "Open http://127.0.0.1:5000/verify-email/abc to confirm.",
        "<p><a href='http://127.0.0.1:5000/verify-email/abc'>Confirm</a></p>",
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as connection:
        connection.send_message(message)


def test_it_receives_over_smtp_and_shows_the_messages(stand_in):
    mailbox, port = stand_in
    send(port, "someone@example.com", "Confirm your email address")
    received = mailbox.wait_for("someone@example.com", "Confirm", timeout=5)
    assert received.mail_from == "no-reply@example.com"
    assert received.links == ["http://127.0.0.1:5000/verify-email/abc"]
    assert "Confirm" in received.html

    page = create_page_app(mailbox).test_client()
    listing = page.get("/").get_data(as_text=True)
    assert "someone@example.com" in listing and "Confirm your email address" in listing
    shown = page.get(f"/messages/{received.number}").get_data(as_text=True)
    assert "http://127.0.0.1:5000/verify-email/abc" in shown and "sandbox" in shown
    assert page.get("/messages/999").status_code == 404
    (as_json,) = page.get("/messages.json").get_json()
    assert as_json["to"] == ["someone@example.com"] and as_json["links"] == received.links


def test_waiting_for_a_message_that_never_comes_fails_clearly(stand_in):
    mailbox, _ = stand_in
    with pytest.raises(AssertionError, match="no email"):
        mailbox.wait_for("nobody@example.com", timeout=0.2)


def test_it_keeps_the_newest_messages_only(stand_in, monkeypatch):
    mailbox, port = stand_in
    monkeypatch.setattr("credit_app.testing.mail_stand_in.MAX_MESSAGES", 2)
    for number in range(3):
        send(port, "many@example.com", f"Message {number}")
    mailbox.wait_for("many@example.com", "Message 2", timeout=5)
    assert [m.subject for m in mailbox.messages()] == ["Message 1", "Message 2"]
