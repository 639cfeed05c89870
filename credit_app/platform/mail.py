"""Sending email over SMTP: the MAIL_URL settings, the connection, and rendering a message
from its Jinja templates (`templates/email/<name>.txt` and `.html`).

`smtp://user:password@host:587` speaks plain SMTP and upgrades with STARTTLS (required when
credentials are sent to anything but this machine); `smtps://…:465` is TLS from the start.
This module talks to the server only; what to send and when is services/mail.py's.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from ipaddress import ip_address
from urllib.parse import unquote, urlsplit

from flask import render_template

from credit_app.errors import MailDeliveryError

DEFAULT_PORTS = {"smtp": 587, "smtps": 465}


@dataclass(frozen=True)
class MailSettings:
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None
    timeout: float

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_mail_url(url: str, timeout: float = 10) -> MailSettings:
    """Read `smtp://user:password@host:port` or `smtps://…`. Raises ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("MAIL_URL must look like smtp://user:password@host:587 or smtps://…")
    return MailSettings(
        scheme=parts.scheme,
        host=parts.hostname,
        port=parts.port or DEFAULT_PORTS[parts.scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        timeout=timeout,
    )


def build_message(sender: str, recipient: str, subject: str, text: str, html: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    domain = sender.rpartition("@")[2].strip("> ") or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def render_message(
    sender: str, recipient: str, subject: str, template: str, **context: object
) -> EmailMessage:
    """The message from `templates/email/<template>.txt` and `.html` (needs an app context)."""
    context = {"subject": subject, **context}
    return build_message(
        sender,
        recipient,
        subject,
        render_template(f"email/{template}.txt", **context),
        render_template(f"email/{template}.html", **context),
    )


def send(settings: MailSettings, message: EmailMessage) -> None:
    """Hand the message to the SMTP server.

    Raises MailDeliveryError when the server cannot be reached, refuses the message, or would
    take credentials without TLS.
    """
    try:
        if settings.scheme == "smtps":
            connection: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.host,
                settings.port,
                timeout=settings.timeout,
                context=ssl.create_default_context(),
            )
        else:
            connection = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        with connection:
            if settings.scheme == "smtp":
                connection.ehlo()
                if connection.has_extn("starttls"):
                    connection.starttls(context=ssl.create_default_context())
                    connection.ehlo()
                elif settings.username and not settings.is_loopback:
                    raise MailDeliveryError(
                        f"{settings.host} does not offer STARTTLS; "
                        "refusing to send the password in clear"
                    )
            if settings.username:
                connection.login(settings.username, settings.password or "")
            connection.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailDeliveryError(f"SMTP {settings.host}:{settings.port}: {exc}") from exc
