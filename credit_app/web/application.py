"""The Flask class of credit_app: Flask, minus two costs every request paid for nothing.

Both were found by counting the Python calls of a request (`python -m bench.profile_request
--calls`), which track its CPU time on this box and, unlike time, do not vary between runs:

- Flask asks `ensure_sync(f)` for every hook and view of every request (about seventeen per
  API request), and each asks `inspect.iscoroutinefunction`, six calls deep. None of our
  functions is a coroutine function, but the answer is remembered per function rather than
  assumed, so an `async def` view would still be run correctly.
- The signed session cookie: Flask builds its itsdangerous serializer (key derivation set-up
  included) on every request, also when there is no cookie to read and nothing to write. The
  serializer is built once per secret key, a request that neither brings nor changes a
  session skips the cookie work, and a request with a bearer token has no session at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from itsdangerous import URLSafeTimedSerializer


class TokenRequestSession(SecureCookieSession):
    """The session of a request that sends `Authorization: Bearer`: empty, never saved. Such
    a request is authenticated by its token alone (auth.identify_api_caller), so the session
    cookie is neither read nor set, and the answer does not vary on it."""


def sends_bearer_token(environ: dict) -> bool:
    return environ.get("HTTP_AUTHORIZATION", "")[:7].lower() == "bearer "


class SignedCookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the serializer built once per key set; none for a
    request with a bearer token."""

    def __init__(self) -> None:
        self._serializers: dict[tuple, URLSafeTimedSerializer] = {}

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            return None
        keys = (*(app.config["SECRET_KEY_FALLBACKS"] or ()), app.secret_key)
        serializer = self._serializers.get(keys)
        if serializer is None:
            serializer = super().get_signing_serializer(app)
            self._serializers = {keys: serializer}  # a changed key replaces the old one
        return serializer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if sends_bearer_token(request.environ):
            return TokenRequestSession()
        if not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class() if app.secret_key else None
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """As Flask's, returning at once for an empty session nobody changed (Flask would
        compute the cookie's seven settings first, then set nothing)."""
        if isinstance(session, TokenRequestSession):
            return
        if not session and not session.modified:
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)


class CreditApp(Flask):
    """The application class `create_app` builds."""

    # Hooks, views and error handlers: a few hundred at most. Past this, functions made on the
    # fly (which would only fill the memo) are asked about afresh.
    MAX_REMEMBERED_FUNCTIONS = 2048

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session_interface = SignedCookieSessions()
        self._sync_functions: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask's answer for `func` (itself, or a wrapper for a coroutine function), worked
        out once per function."""
        try:
            return self._sync_functions[func]
        except KeyError:
            pass
        except TypeError:  # an unhashable callable: ask Flask every time
            return super().ensure_sync(func)
        synchronous = super().ensure_sync(func)
        if len(self._sync_functions) < self.MAX_REMEMBERED_FUNCTIONS:
            self._sync_functions[func] = synchronous
        return synchronous
