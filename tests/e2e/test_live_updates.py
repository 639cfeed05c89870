"""The live counter in a real browser: pushed across processes, and polled when the socket
cannot connect."""

from __future__ import annotations

import subprocess

import httpx
import pytest
from selenium.webdriver.support.ui import WebDriverWait

from credit_app.platform.extensions import db
from credit_app.services import accounts
from tests.e2e.pages import Roomcraft
from tests.test_live import free_port, start_app_process

pytestmark = [pytest.mark.e2e, pytest.mark.concurrency]


def api_token_for(app, email: str) -> str:
    with app.app_context():
        user = accounts.find_user_by_email(email)
        _, token = accounts.create_api_token(user.id, "e2e")
        db.session.commit()
        return token


def consume_through(base_url: str, token: str) -> None:
    response = httpx.post(
        f"{base_url}/api/user/credits/consume",
        json={"feature": "interior"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def second_process() -> str:
    port = free_port()
    process = start_app_process(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_a_consume_through_one_process_updates_a_browser_on_another(
    app, browser, live_server, second_process, screenshot_dir, smtp_server
):
    on_b = Roomcraft(browser, second_process, screenshot_dir, smtp_server[0])
    email = on_b.sign_up()
    on_b.wait_for_counter("6/6")
    on_b.wait_for_live_counter()
    consume_through(live_server, api_token_for(app, email))
    WebDriverWait(browser, 1.0).until(
        lambda _: on_b.counter() == "5/6", f"not pushed within 1 s (shows {on_b.counter()!r})"
    )


REFUSED_SOCKET = """
window.WebSocket = class RefusedSocket {
  constructor(url) {
    this.url = url; this.readyState = 3;
    setTimeout(() => { this.onerror && this.onerror(new Event("error"));
                       this.onclose && this.onclose({code: 1006, reason: "refused"}); }, 10);
  }
  send() {} close() {} addEventListener() {} removeEventListener() {}
};
"""


def test_without_the_socket_the_counter_converges_by_polling(app, roomcraft, live_server):
    roomcraft.driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": REFUSED_SOCKET}
    )
    email = roomcraft.sign_up()
    roomcraft.wait_for_counter("6/6")
    assert "live-down" in roomcraft.find("body").get_attribute("class")
    consume_through(live_server, api_token_for(app, email))
    roomcraft.wait_for_counter("5/6", timeout=20)
    assert "live-down" in roomcraft.find("body").get_attribute("class")
