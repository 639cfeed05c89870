"""The security headers every response carries, set in this one place.

The Content-Security-Policy allows scripts from our own origin only (no inline script, no
eval: htmx runs with `allowEval: false` and `includeIndicatorStyles: false`). Styles allow
inline `style` attributes, which the templates use for computed widths. HSTS is not set here.
"""

from __future__ import annotations

from flask import Flask, Response

CONTENT_SECURITY_POLICY = "; ".join((
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
))
PERMISSIONS_POLICY = ", ".join(f"{feature}=()" for feature in (
    "accelerometer", "autoplay", "camera", "display-capture", "geolocation", "gyroscope",
    "magnetometer", "microphone", "midi", "payment", "usb", "interest-cohort",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Permissions-Policy": PERMISSIONS_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


_NAMED_HEADERS = tuple((name.lower(), name, value) for name, value in SECURITY_HEADERS.items())


def set_security_headers(response: Response) -> Response:
    """Add the headers a view has not set itself, in one pass over the response's headers
    (a `setdefault` per header scanned them all, lower-casing each name, six times)."""
    headers = response.headers
    present = {name.lower() for name, _ in headers.items()}
    headers.extend([(name, value) for lowered, name, value in _NAMED_HEADERS
                    if lowered not in present])
    return response


def init_security_headers(app: Flask) -> None:
    app.after_request(set_security_headers)
