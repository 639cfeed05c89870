"""The security headers every response carries, set in this one place.

Documents (pages, fragments, files) get the full set. The Content-Security-Policy allows
scripts from our own origin only (no inline script, no eval: htmx runs with `allowEval:
false` and `includeIndicatorStyles: false`). Styles allow inline `style` attributes, which
the templates use for computed widths.

JSON answers get the set OWASP's REST Security cheat sheet gives for an API: a policy that
allows nothing and no framing, nosniff, and `Cache-Control: no-store` (a balance must never be
answered from a shared cache), unless the view chose its own caching. A JSON body is never
rendered, so the document headers (permissions, referrer, opener) do nothing there; each
header costs the server about a dozen calls to add and send. HSTS is not set here.
"""

from __future__ import annotations

from flask import Flask, Response

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
    )
)
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "autoplay",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "usb",
        "interest-cohort",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Permissions-Policy": PERMISSIONS_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


JSON_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def _named(headers: dict[str, str]) -> tuple[tuple[str, str, str], ...]:
    return tuple((name.lower(), name, value) for name, value in headers.items())


_DOCUMENT_HEADERS = _named(SECURITY_HEADERS)
_JSON_HEADERS = _named(JSON_SECURITY_HEADERS)


def set_security_headers(response: Response) -> Response:
    """Add the headers a view has not set itself, in one pass over the response's headers
    (a `setdefault` per header scanned them all, lower-casing each name, once per header)."""
    headers = response.headers
    present = {name.lower() for name, _ in headers.items()}
    wanted = _JSON_HEADERS if response.mimetype == "application/json" else _DOCUMENT_HEADERS
    headers.extend([(name, value) for lowered, name, value in wanted if lowered not in present])
    return response


def init_security_headers(app: Flask) -> None:
    app.after_request(set_security_headers)
