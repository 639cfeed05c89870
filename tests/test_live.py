"""Live credit updates: messages after commit only, to the right user's sockets only,
across processes; sockets refuse anonymous and cross-site callers."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import simple_websocket
from werkzeug.serving import make_server

from credit_app.platform.extensions import db
from credit_app.platform.redis_client import get_redis
from credit_app.services import accounts, credits
from credit_app.services.live import channel_for
from tests.conftest import CONCURRENCY_DOMAIN, PASSWORD

PROJECT = Path(__file__).resolve().parent.parent
BROWSER = "Mozilla/5.0 (live-update test)"


def subscriber(user_id: int):
    pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel_for(user_id))
    return pubsub


def next_message(pubsub, timeout: float = 2.0) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = pubsub.get_message(timeout=0.1)
        if item and item["type"] == "message":
            return json.loads(item["data"])
    return None


class TestMessages:
    def test_consume_publishes_after_commit_only(self, user):
        pubsub = subscriber(user.id)
        credits.consume_credit(user.id, "video")
        assert next_message(pubsub, 0.3) is None
        db.session.commit()
        message = next_message(pubsub)
        assert message == {
            "type": "CREDIT_CONSUMED",
            "user_id": str(user.id),
            "remaining_credits": 5,
            "feature": "video",
            "total": 6,
            "subscription_status": "free",
            "ledger_id": credits.latest_entry_id(user.id),
        }

    def test_rolled_back_changes_publish_nothing(self, user):
        pubsub = subscriber(user.id)
        credits.consume_credit(user.id, "video")
        db.session.rollback()
        db.session.commit()
        assert next_message(pubsub, 0.5) is None

    def test_each_kind_of_change(self, user):
        pubsub = subscriber(user.id)
        reservation = credits.reserve_credit(user.id, "sketch", "live-1")
        db.session.commit()
        assert next_message(pubsub)["type"] == "CREDIT_CONSUMED"
        credits.release_reservation(reservation.id)
        db.session.commit()
        released = next_message(pubsub)
        assert (released["type"], released["remaining_credits"]) == ("CREDIT_RELEASED", 6)
        credits.grant_credits(user.id, 4, "gift")
        db.session.commit()
        granted = next_message(pubsub)
        assert (granted["type"], granted["remaining_credits"], granted["total"]) == (
            "CREDIT_GRANTED",
            10,
            10,
        )
        credits.change_plan(user.id, "pro", "test")
        db.session.commit()
        changed = next_message(pubsub)
        assert (changed["type"], changed["subscription_status"]) == ("PLAN_CHANGED", "pro")

    def test_one_message_per_user_per_commit_and_never_to_others(self, make_user):
        alice, bob = make_user(), make_user()
        alice_inbox, bob_inbox = subscriber(alice.id), subscriber(bob.id)
        credits.consume_credit(alice.id, "interior")
        credits.consume_credit(alice.id, "interior")
        db.session.commit()
        assert next_message(alice_inbox)["remaining_credits"] == 4
        assert next_message(alice_inbox, 0.3) is None
        assert next_message(bob_inbox, 0.3) is None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def live_server(app) -> Iterator[str]:
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def committed_user(app) -> int:
    with app.app_context():
        user = accounts.register_user(
            f"live-{uuid.uuid4().hex[:10]}@{CONCURRENCY_DOMAIN}", PASSWORD
        )
        db.session.commit()
        return user.id, user.email


def session_cookie(host: str, email: str) -> str:
    with httpx.Client(base_url=f"http://{host}", headers={"User-Agent": BROWSER}) as client:
        page = client.get("/login")
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text)
        data = {"email": email, "password": PASSWORD}
        if token:
            data["csrf_token"] = token.group(1)
        response = client.post("/login", data=data)
        assert response.status_code == 302, response.text
        return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


class SocketClient(simple_websocket.Client):
    """simple_websocket's client without its race: when the server's first message arrives in
    the same read as the handshake's answer, the stock client leaves it queued inside wsproto
    until more bytes come, which never happens for a socket that sends its state and waits
    (the live socket's first state did this now and then)."""

    def handshake(self) -> None:
        super().handshake()
        self._handle_events()


def connect(host: str, cookie: str | None, origin: str | None = None):
    headers = {"Origin": origin or f"http://{host}", "User-Agent": BROWSER}
    if cookie:
        headers["Cookie"] = cookie
    return SocketClient.connect(f"ws://{host}/ws/credits", headers=headers)


def test_the_socket_client_keeps_a_message_that_came_with_the_handshake():
    """A server that answers the upgrade and sends its first message in one write."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request, TextMessage

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        server = WSConnection(ConnectionType.SERVER)
        while not any(isinstance(event, Request) for event in server.events()):
            server.receive_data(connection.recv(4096))
        connection.sendall(server.send(AcceptConnection()) + server.send(TextMessage("first")))
        time.sleep(2)
        connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        client = SocketClient.connect(f"ws://127.0.0.1:{port}/")
        assert client.receive(timeout=1) == "first"
    finally:
        thread.join(5)
        listener.close()


def receive_counter(ws, timeout: float = 3.0) -> str | None:
    message = ws.receive(timeout=timeout)
    if message is None:
        return None
    match = re.search(r"<strong[^>]*>([^<]+)</strong>", message)
    assert 'id="sidebar-credits"' in message and 'hx-swap-oob="true"' in message
    return match.group(1)


@pytest.mark.concurrency
class TestSocket:
    def test_anonymous_and_foreign_origin_are_refused(self, app, live_server):
        with pytest.raises(simple_websocket.ConnectionError):
            connect(live_server, None)
        _, email = committed_user(app)
        cookie = session_cookie(live_server, email)
        with pytest.raises(simple_websocket.ConnectionError):
            connect(live_server, cookie, origin="https://evil.example")

    def test_current_state_then_every_change_to_every_tab_of_that_user_only(self, app, live_server):
        alice_id, alice_email = committed_user(app)
        _, bob_email = committed_user(app)
        alice_tabs = [
            connect(live_server, session_cookie(live_server, alice_email)) for _ in range(2)
        ]
        bob_tab = connect(live_server, session_cookie(live_server, bob_email))
        try:
            assert [receive_counter(tab) for tab in alice_tabs] == ["6/6", "6/6"]
            assert receive_counter(bob_tab) == "6/6"
            with app.app_context():
                credits.consume_credit(alice_id, "interior")
                db.session.commit()
            assert [receive_counter(tab) for tab in alice_tabs] == ["5/6", "5/6"]
            assert receive_counter(bob_tab, timeout=1.0) is None
            with app.app_context():
                credits.change_plan(alice_id, "pro", "test")
                db.session.commit()
            assert receive_counter(alice_tabs[0]) == "Unlimited"
            stale = {
                "type": "CREDIT_CONSUMED",
                "user_id": str(alice_id),
                "remaining_credits": 6,
                "feature": None,
                "total": 6,
                "subscription_status": "free",
                "ledger_id": 1,
            }
            with app.app_context():
                get_redis().publish(channel_for(alice_id), json.dumps(stale))
            assert receive_counter(alice_tabs[0], timeout=1.0) is None
        finally:
            for tab in (*alice_tabs, bob_tab):
                tab.close()


def start_app_process(port: int) -> subprocess.Popen:
    """gunicorn with the project's config on `port`. Its log goes to a file: a pipe nobody
    reads fills up after a few hundred request lines and then blocks the server."""
    env = {
        **os.environ,
        "APP_ENV": "testing",
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "16",
        "ACCESS_LOG": "0",
    }
    with tempfile.NamedTemporaryFile(
        prefix=f"gunicorn-{port}-", suffix=".log", delete=False
    ) as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "app:app", "--config", "gunicorn.conf.py"],
            cwd=PROJECT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/login", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"app process on {port} did not start: {Path(log.name).read_text()[-2000:]}")


@pytest.mark.concurrency
def test_a_change_through_one_process_reaches_a_socket_on_another(app):
    user_id, email = committed_user(app)
    with app.app_context():
        _, token = accounts.create_api_token(user_id, "process-a")
        db.session.commit()
    port_a, port_b = free_port(), free_port()
    processes = [start_app_process(port_a), start_app_process(port_b)]
    try:
        host_b = f"127.0.0.1:{port_b}"
        tab = connect(host_b, session_cookie(host_b, email))
        assert receive_counter(tab) == "6/6"
        response = httpx.post(
            f"http://127.0.0.1:{port_a}/api/user/credits/consume",
            json={"feature": "video"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200
        assert receive_counter(tab, timeout=1.0) == "5/6"
        tab.close()
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
