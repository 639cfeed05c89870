"""HTTPS behind Heroku's router: a trusted X-Forwarded-Proto of http is redirected to https,
https responses carry HSTS, and a request without the header is served (no redirect loop)."""

from __future__ import annotations

import pytest
from flask import Flask, request

from credit_app import enforce_https, trust_proxies


def make_app(force_https: bool = True, hops: int = 1) -> Flask:
    app = Flask(__name__)
    app.config.update(FORCE_HTTPS=force_https, TRUSTED_PROXY_HOPS=hops, HSTS_MAX_AGE_SECONDS=600)
    trust_proxies(app)
    enforce_https(app)

    @app.route("/echo", methods=["GET", "POST"])
    def echo():
        return f"{request.scheme} {request.remote_addr}"

    return app


def router(proto: str) -> dict[str, str]:
    return {
        "X-Forwarded-Proto": proto,
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Host": "roomcraft.example",
    }


def test_plain_http_through_the_router_is_redirected_permanently():
    client = make_app().test_client()
    response = client.get("/echo?next=/dashboard", headers=router("http"))
    assert response.status_code == 301
    assert response.headers["Location"] == "https://roomcraft.example/echo?next=/dashboard"
    assert "Strict-Transport-Security" not in response.headers


def test_a_form_post_over_http_keeps_its_method():
    response = make_app().test_client().post("/echo", headers=router("http"))
    assert response.status_code == 308
    assert response.headers["Location"] == "https://roomcraft.example/echo"


def test_https_through_the_router_is_served_with_hsts_and_the_client_address():
    response = make_app().test_client().get("/echo", headers=router("https"))
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "https 203.0.113.9"
    assert response.headers["Strict-Transport-Security"] == "max-age=600; includeSubDomains"


def test_a_request_that_skipped_the_router_is_served_as_it_came():
    response = make_app().test_client().get("/echo")
    assert response.status_code == 200 and "Strict-Transport-Security" not in response.headers


@pytest.mark.parametrize("force_https,hops", [(False, 1), (True, 0)])
def test_nothing_is_enforced_without_the_setting_or_a_trusted_proxy(force_https, hops):
    response = make_app(force_https, hops).test_client().get("/echo", headers=router("http"))
    assert response.status_code == 200 and "Strict-Transport-Security" not in response.headers
