"""HTTPS behind a TLS-terminating proxy (Heroku's router): redirect plain HTTP, send HSTS.

Only a trusted proxy can say how the client connected: with TRUSTED_PROXY_HOPS set,
`trust_proxies` has already taken the scheme from X-Forwarded-Proto. A request that reached the
app without that header (a probe on the dyno itself) is served as it is, so a missing proxy
never turns into a redirect loop.
"""

from __future__ import annotations

from flask import Flask, Response, redirect, request

FORWARDED_PROTO = "HTTP_X_FORWARDED_PROTO"


def https_redirect() -> Response | None:
    """A redirect to the https URL when a trusted proxy says the client used plain HTTP."""
    if request.environ.get(FORWARDED_PROTO) is None or request.is_secure:
        return None
    target = request.url.replace("http://", "https://", 1)
    return redirect(target, code=301 if request.method in ("GET", "HEAD") else 308)


def add_hsts(response: Response, max_age: int) -> Response:
    if request.is_secure:
        response.headers.setdefault(
            "Strict-Transport-Security", f"max-age={max_age}; includeSubDomains"
        )
    return response


def enforce_https(app: Flask) -> None:
    """With FORCE_HTTPS (the production default) behind TRUSTED_PROXY_HOPS proxies, redirect
    http:// requests to https:// and send Strict-Transport-Security on https ones."""
    if not app.config["FORCE_HTTPS"] or not app.config["TRUSTED_PROXY_HOPS"]:
        return
    max_age = app.config["HSTS_MAX_AGE_SECONDS"]
    app.before_request(https_redirect)
    app.after_request(lambda response: add_hsts(response, max_age))
