"""Admin two-factor sign-in: TOTP (RFC 6238, pyotp) with one-time recovery codes.

A code is accepted for the current 30-second step and one either side (clock drift), and
never twice: the step used is remembered. Recovery codes are random, stored as SHA-256
hashes and used once each.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import pyotp
import segno
from sqlalchemy import delete, select

from credit_app.errors import InvalidTwoFactorCode
from credit_app.models import RecoveryCode, User
from credit_app.models.base import lock_one
from credit_app.platform.extensions import db
from credit_app.services.credits import utcnow
from credit_app.services.limits import MAX_RECOVERY_CODE_LENGTH, TOTP_DIGITS

ISSUER = "Roomcraft"
RECOVERY_CODES = 10
STEP_SECONDS = 30


def ensure_secret(user: User) -> str:
    """The secret being set up (made once until two-factor is confirmed)."""
    if user.totp_secret is None:
        user.totp_secret = pyotp.random_base32()
        db.session.flush()
    return user.totp_secret


def provisioning_uri(user: User) -> str:
    return pyotp.TOTP(ensure_secret(user), digits=TOTP_DIGITS).provisioning_uri(
        name=user.email, issuer_name=ISSUER
    )


def qr_code_data_uri(user: User) -> str:
    """The provisioning URI as an SVG QR code, for an <img src>."""
    return segno.make(provisioning_uri(user), error="m").svg_data_uri(scale=5, border=2)


def _matching_step(secret: str, code: str, now: float) -> int | None:
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS)
    current = int(now // STEP_SECONDS)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


def check_totp(user: User, code: str, now: float | None = None) -> bool:
    """True (and the step is remembered) for a fresh valid code of the user's secret."""
    code = "".join(ch for ch in (code or "") if ch.isdigit())
    if user.totp_secret is None or len(code) != TOTP_DIGITS:
        return False
    step = _matching_step(user.totp_secret, code, time.time() if now is None else now)
    if step is None or (user.totp_last_step is not None and step <= user.totp_last_step):
        return False
    user.totp_last_step = step
    db.session.flush()
    return True


def _hash_code(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace("-", "").encode()).hexdigest()


def enable(user: User, code: str, now: float | None = None) -> list[str]:
    """Confirm the secret with a code from the app; returns fresh recovery codes (shown once).

    Raises InvalidTwoFactorCode.
    """
    ensure_secret(user)
    if not check_totp(user, code, now):
        raise InvalidTwoFactorCode(
            f"That code is not right. Enter the {TOTP_DIGITS} digits the "
            "app shows for Roomcraft now.",
            field="code",
        )
    user.totp_enabled_at = utcnow()
    return new_recovery_codes(user)


def new_recovery_codes(user: User) -> list[str]:
    """Replace the user's recovery codes with RECOVERY_CODES new ones; returns them."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODES)]
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=_hash_code(code)) for code in codes)
    db.session.flush()
    return codes


def use_recovery_code(user: User, code: str) -> bool:
    """True (and the code is spent) for one of the user's unused recovery codes."""
    if not code or len(code) > MAX_RECOVERY_CODE_LENGTH:
        return False
    row = lock_one(
        RecoveryCode,
        RecoveryCode.user_id == user.id,
        RecoveryCode.code_hash == _hash_code(code),
        RecoveryCode.used_at.is_(None),
    )
    if row is None:
        return False
    row.used_at = utcnow()
    db.session.flush()
    return True


def verify(user: User, code: str, now: float | None = None) -> str:
    """Check a sign-in code: a TOTP code or a recovery code. Returns "totp" or "recovery".

    Raises InvalidTwoFactorCode.
    """
    if check_totp(user, code, now):
        return "totp"
    if use_recovery_code(user, code):
        return "recovery"
    raise InvalidTwoFactorCode(
        f"That code is not right. Enter the {TOTP_DIGITS} digits your "
        "app shows now, or a recovery code.",
        field="code",
    )


def recovery_codes_left(user: User) -> int:
    return len(
        db.session.execute(
            select(RecoveryCode.id).where(
                RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
            )
        ).all()
    )
