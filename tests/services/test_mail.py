"""The mail outbox and SMTP delivery, against the suite's real SMTP server."""

from __future__ import annotations

from email.utils import parseaddr

import pytest
from sqlalchemy import select

from credit_app.errors import MailDeliveryError
from credit_app.jobs.mail import deliver_email
from credit_app.jobs.registry import get_queue
from credit_app.models import OutboundEmail
from credit_app.platform import mail as smtp
from credit_app.platform.extensions import db
from credit_app.services import mail
from credit_app.testing.mail_stand_in import free_port
from tests.mail_support import empty_queue, link_path, run_jobs


class TestMailUrl:
    def test_smtp_with_credentials(self):
        settings = smtp.parse_mail_url("smtp://api%40key:p%2Fss@smtp.example.com:2525")
        assert (settings.scheme, settings.host, settings.port) == ("smtp", "smtp.example.com", 2525)
        assert (settings.username, settings.password) == ("api@key", "p/ss")
        assert not settings.is_loopback

    @pytest.mark.parametrize("url,port", [("smtp://host", 587), ("smtps://host", 465)])
    def test_default_ports(self, url, port):
        assert smtp.parse_mail_url(url).port == port

    @pytest.mark.parametrize("url", ["http://host", "smtp://", "host:25"])
    def test_bad_urls(self, url):
        with pytest.raises(ValueError):
            smtp.parse_mail_url(url)


class TestOutbox:
    def test_a_message_is_queued_after_commit_and_delivered_over_smtp(self, app, user, mailbox):
        empty_queue()
        email_id = mail.queue_email(user.email, "verify_email", user_id=user.id)
        assert get_queue("default").count == 0
        db.session.commit()
        assert get_queue("default").count == 1
        run_jobs()
        received = mailbox.wait_for(user.email, "Confirm your email")
        assert received.mail_from == parseaddr(app.config["MAIL_FROM"])[1]
        assert "/verify-email/" in received.text and "/verify-email/" in received.html
        assert link_path(received.text, "/verify-email/").count("/") == 2
        assert db.session.get(OutboundEmail, email_id).sent_at is not None

    def test_delivering_twice_sends_once(self, user, mailbox):
        email_id = mail.queue_email(user.email, "password_changed", user_id=user.id)
        db.session.commit()
        assert deliver_email(email_id) == "sent"
        assert deliver_email(email_id) == "already sent"
        assert len(mailbox.messages(user.email)) == 1
        assert deliver_email(10**9) == "missing"

    def test_a_dedupe_key_makes_it_one_time(self, user):
        assert mail.queue_email(
            user.email,
            "one_credit_left",
            user_id=user.id,
            context={"remaining": 1, "total": 6},
            dedupe_key="k-1",
        )
        assert (
            mail.queue_email(
                user.email,
                "one_credit_left",
                user_id=user.id,
                context={"remaining": 1, "total": 6},
                dedupe_key="k-1",
            )
            is None
        )
        assert (
            len(
                db.session.execute(
                    select(OutboundEmail).where(OutboundEmail.dedupe_key == "k-1")
                ).all()
            )
            == 1
        )

    def test_an_unknown_template_fails_at_once(self, user):
        with pytest.raises(KeyError):
            mail.queue_email(user.email, "no_such_template", user_id=user.id)

    def test_an_unreachable_server_counts_the_attempt_and_raises_for_a_retry(
        self, app, user, monkeypatch, mailbox
    ):
        email_id = mail.queue_email(user.email, "password_changed", user_id=user.id)
        db.session.commit()
        monkeypatch.setitem(app.config, "MAIL_URL", f"smtp://127.0.0.1:{free_port()}")
        with pytest.raises(MailDeliveryError):
            deliver_email(email_id)
        stored = db.session.get(OutboundEmail, email_id)
        db.session.refresh(stored)
        assert stored.sent_at is None and stored.attempts == 1 and "SMTP" in stored.last_error
        monkeypatch.undo()
        assert deliver_email(email_id) == "sent"
        assert mailbox.wait_for(user.email, "password was changed")

    def test_smtps_to_a_plain_server_fails_cleanly(self, app, user, monkeypatch, smtp_server):
        email_id = mail.queue_email(user.email, "password_changed", user_id=user.id)
        db.session.commit()
        monkeypatch.setitem(app.config, "MAIL_URL", f"smtps://127.0.0.1:{smtp_server[1]}")
        with pytest.raises(MailDeliveryError):
            deliver_email(email_id)

    def test_a_deleted_account_gets_nothing(self, user, mailbox):
        from credit_app.services.credits import utcnow

        email_id = mail.queue_email(user.email, "password_changed", user_id=user.id)
        user.deleted_at = utcnow()
        db.session.commit()
        assert deliver_email(email_id) == "skipped"
        assert mailbox.messages(user.email) == []

    def test_links_use_public_url_when_set(self, app, user, monkeypatch, mailbox):
        monkeypatch.setitem(app.config, "PUBLIC_URL", "https://rooms.example.com")
        email_id = mail.queue_email(user.email, "password_reset", user_id=user.id)
        db.session.commit()
        deliver_email(email_id)
        received = mailbox.wait_for(user.email, "Reset your")
        assert "https://rooms.example.com/reset-password/" in received.text

    def test_every_template_renders_in_text_and_html(self, user):
        for template in mail.SUBJECTS:
            email_id = mail.queue_email(
                user.email,
                template,
                user_id=user.id,
                context={
                    "remaining": 1,
                    "total": 6,
                    "credits_kept": 3,
                    "renews_on": "May 1, 2031",
                    "plan_name": "Pro monthly",
                    "access_ends": "May 1, 2031",
                },
            )
            db.session.flush()
            email = db.session.get(OutboundEmail, email_id)
            message = smtp.render_message(
                "a@example.com",
                user.email,
                template,
                template,
                **{
                    **email.context,
                    "user": user,
                    "to_address": user.email,
                    "links": mail._links(email, user),
                },
            )
            text = message.get_body(("plain",)).get_content()
            html = message.get_body(("html",)).get_content()
            assert "Roomcraft" in text and "<html" in html and "{{" not in text + html
