"""Signed links mailed to people: password reset (single-use, about an hour) and email
verification. Nothing is stored: a link is signed with SECRET_KEY and checked against the
account as it is now.

A reset token carries a fingerprint of the password hash and session version, so it stops
working once used (the password changed) or once every session was ended.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from credit_app.errors import InvalidToken
from credit_app.models import User
from credit_app.platform.extensions import db

RESET_SALT = "credit_app.password-reset"
VERIFY_SALT = "credit_app.verify-email"


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)


def _load(token: str, salt: str, max_age_setting: str, refusal: str) -> Any:
    """What a link signed with `salt` carries, if it is younger than the `max_age_setting`
    config value. Raises InvalidToken(refusal) for a bad or expired signature."""
    try:
        return _serializer(salt).loads(token, max_age=current_app.config[max_age_setting])
    except BadSignature:
        raise InvalidToken(refusal) from None


def _fingerprint(user: User) -> str:
    return hashlib.sha256(f"{user.password_hash}:{user.session_version}".encode()).hexdigest()[:24]


def reset_token(user: User) -> str:
    return _serializer(RESET_SALT).dumps({"u": user.id, "f": _fingerprint(user)})


def user_for_reset_token(token: str) -> User:
    """The account a reset link is for. Raises InvalidToken (bad, expired or used)."""
    payload = _load(
        token,
        RESET_SALT,
        "PASSWORD_RESET_MAX_AGE_SECONDS",
        "That reset link is invalid or has expired. Ask for a new one.",
    )
    user = db.session.get(User, payload.get("u")) if isinstance(payload, dict) else None
    if user is None or user.is_deleted or payload.get("f") != _fingerprint(user):
        raise InvalidToken(
            "That reset link was already used or is no longer valid. Ask for a new one."
        )
    return user


def verification_token(user_id: int, email: str) -> str:
    return _serializer(VERIFY_SALT).dumps({"u": user_id, "e": email})


def read_verification_token(token: str) -> tuple[int, str]:
    """The user id and address a verification link is for. Raises InvalidToken."""
    payload = _load(
        token,
        VERIFY_SALT,
        "EMAIL_VERIFICATION_MAX_AGE_SECONDS",
        "That confirmation link is invalid or has expired. Sign in and ask for a new one.",
    )
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("u"), int)
        or not isinstance(payload.get("e"), str)
    ):
        raise InvalidToken()
    return payload["u"], payload["e"]
