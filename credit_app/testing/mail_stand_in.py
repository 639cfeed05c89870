"""A local SMTP server that keeps what it receives and shows it on a small page.

It is a real SMTP server (aiosmtpd): the app sends to it exactly as it sends to a provider.
`make run` starts it when MAIL_URL is unset (SMTP on 127.0.0.1:1025, the page on
http://127.0.0.1:5057/); the tests start one on a free port and read what arrived.

    python -m credit_app.testing.mail_stand_in --port 1025 --http-port 5057
"""

from __future__ import annotations

import argparse
import itertools
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from flask import Flask, abort, jsonify, render_template_string

MAX_MESSAGES = 500
LINK = re.compile(r"https?://[^\s<>\"')]+")


@dataclass
class ReceivedMessage:
    number: int
    mail_from: str
    recipients: list[str]
    message: EmailMessage
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        return body.get_content() if body is not None else ""

    @property
    def text(self) -> str:
        return self.part("plain")

    @property
    def html(self) -> str:
        return self.part("html")

    @property
    def links(self) -> list[str]:
        """The links of the text part, in order."""
        return LINK.findall(self.text)

    def as_json(self) -> dict:
        return {
            "number": self.number,
            "from": self.mail_from,
            "to": self.recipients,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "links": self.links,
            "received_at": self.received_at.isoformat(),
        }


class Mailbox:
    """What the server received, newest last (thread-safe; the SMTP server has its own)."""

    def __init__(self) -> None:
        self._messages: list[ReceivedMessage] = []
        self._lock = threading.Condition()
        self._numbers = itertools.count(1)

    async def handle_DATA(self, server, session, envelope) -> str:
        message = message_from_bytes(
            envelope.original_content or envelope.content, policy=policy.default
        )
        with self._lock:
            self._messages.append(
                ReceivedMessage(
                    next(self._numbers), envelope.mail_from, list(envelope.rcpt_tos), message
                )
            )
            del self._messages[:-MAX_MESSAGES]
            self._lock.notify_all()
        return "250 Message accepted for delivery"

    def messages(self, to: str | None = None) -> list[ReceivedMessage]:
        with self._lock:
            found = list(self._messages)
        if to is not None:
            found = [m for m in found if to.lower() in (r.lower() for r in m.recipients)]
        return found

    def wait_for(
        self, to: str, subject_contains: str = "", count: int = 1, timeout: float = 20
    ) -> ReceivedMessage:
        """The `count`-th message to `to` whose subject contains the text; AssertionError if
        none arrives within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                matching = [m for m in self.messages(to) if subject_contains in m.subject]
                if len(matching) >= count:
                    return matching[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    subjects = [m.subject for m in self.messages(to)]
                    raise AssertionError(
                        f"no email {subject_contains!r} to {to} arrived (got {subjects})"
                    )
                self._lock.wait(min(remaining, 0.2))

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def start_smtp(mailbox: Mailbox, host: str = "127.0.0.1", port: int | None = None) -> Controller:
    """Start the SMTP server in its own thread; `controller.port` is where it listens."""
    controller = Controller(mailbox, hostname=host, port=port or free_port(host), ready_timeout=10)
    controller.start()
    return controller


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Local mail · Roomcraft</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem;
       color: #1d1d1f; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
td, th { text-align: left; padding: .4rem; border-bottom: 1px solid #ddd; vertical-align: top;
         overflow-wrap: anywhere; } th:first-child { width: 6rem; }
a { color: #2f5d50; } main { overflow-wrap: anywhere; }
pre { white-space: pre-wrap; background: #f4f4f1; padding: 1rem; border-radius: 8px; }
iframe { width: 100%; height: 36rem; border: 1px solid #ddd; border-radius: 8px; }
</style></head><body>
<main>
{% if message %}
<p><a href="/">← All messages</a></p>
<h1>{{ message.subject }}</h1>
<p>From {{ message.mail_from }} to {{ message.recipients | join(', ') }},
{{ message.received_at.strftime('%Y-%m-%d %H:%M:%S') }} UTC</p>
<h2>Links</h2>
<ul>{% for link in message.links %}<li><a href="{{ link }}">{{ link }}</a></li>{% endfor %}</ul>
<h2>Text</h2><pre>{{ message.text }}</pre>
<h2>HTML</h2><iframe title="The HTML part" sandbox srcdoc="{{ message.html }}"></iframe>
{% else %}
<h1>Local mail</h1>
<p>Every email the app sends while <code>MAIL_URL</code> is unset arrives here (newest first).
Nothing leaves this machine.</p>
{% if messages %}
<table><thead><tr><th scope="col">Received (UTC)</th><th scope="col">To</th>
<th scope="col">Subject</th></tr></thead><tbody>
{% for m in messages %}<tr><td>{{ m.received_at.strftime('%H:%M:%S') }}</td>
<td>{{ m.recipients | join(', ') }}</td>
<td><a href="/messages/{{ m.number }}">{{ m.subject }}</a></td></tr>{% endfor %}
</tbody></table>
{% else %}<p>No email yet.</p>{% endif %}
{% endif %}
</main></body></html>"""


def create_page_app(mailbox: Mailbox) -> Flask:
    """The page that lists the messages, shows one, and serves them as JSON."""
    app = Flask(__name__)

    @app.get("/")
    def index():
        return render_template_string(
            PAGE, messages=list(reversed(mailbox.messages())), message=None
        )

    @app.get("/messages/<int:number>")
    def show(number: int):
        found = [m for m in mailbox.messages() if m.number == number] or abort(404)
        return render_template_string(PAGE, message=found[0], messages=[])

    @app.get("/messages.json")
    def as_json():
        return jsonify([m.as_json() for m in mailbox.messages()])

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025, help="SMTP port")
    parser.add_argument("--http-port", type=int, default=5057, help="port of the page")
    args = parser.parse_args()
    mailbox = Mailbox()
    controller = start_smtp(mailbox, args.host, args.port)
    print(
        f"SMTP on {args.host}:{controller.port}; messages on http://{args.host}:{args.http_port}/",
        flush=True,
    )
    try:
        create_page_app(mailbox).run(host=args.host, port=args.http_port)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
