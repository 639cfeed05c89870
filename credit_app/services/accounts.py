"""Accounts: sign-up with its welcome credits, sign-in, admins, and personal API tokens."""

from __future__ import annotations

import hashlib
import secrets

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from credit_app.errors import EmailTaken, ValidationFailed, WeakPassword
from credit_app.extensions import db
from credit_app.models import ApiToken, User, UserRole
from credit_app.services import credits
from credit_app.services.credits import utcnow

WELCOME_CREDITS = 6
MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "ca_"
COMMON_PASSWORDS = frozenset({
    "password", "password1", "password123", "1234567890", "12345678910", "qwertyuiop",
    "iloveyou123", "letmein123", "welcome123", "passw0rd123", "qwerty12345", "abc1234567",
})
# A hash to compare against when the email is unknown, so sign-in takes as long either way.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def normalize_email(email: str) -> str:
    """Return the canonical form of an email address. Raises ValidationFailed."""
    try:
        result = validate_email(email or "", check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationFailed(f"That email address is not valid: {exc}", field="email") from None
    return result.normalized.lower()


def check_password_strength(password: str, email: str = "",
                            min_length: int = MIN_PASSWORD_LENGTH) -> None:
    """Raises WeakPassword with a message a person can act on."""
    if not isinstance(password, str) or len(password) < min_length:
        raise WeakPassword(f"Use at least {min_length} characters for your password.",
                           field="password")
    if len(password) > 256:
        raise WeakPassword("Use at most 256 characters for your password.", field="password")
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS or len(set(password)) < 4:
        raise WeakPassword("That password is too easy to guess; choose another.",
                           field="password")
    if email and lowered == email.lower():
        raise WeakPassword("Your password must not be your email address.", field="password")


def find_user_by_email(email: str) -> User | None:
    return db.session.execute(
        select(User).where(func.lower(User.email) == email.strip().lower())
    ).scalar_one_or_none()


def register_user(
    email: str,
    password: str,
    role: UserRole = UserRole.USER,
    welcome_credits: int = WELCOME_CREDITS,
    min_password_length: int = MIN_PASSWORD_LENGTH,
) -> User:
    """Create the account and grant its welcome credits in the same transaction.

    Raises ValidationFailed (bad email), WeakPassword, EmailTaken.
    """
    email = normalize_email(email)
    check_password_strength(password, email, min_password_length)
    if find_user_by_email(email) is not None:
        raise EmailTaken(field="email")
    user = User(
        email=email,
        password_hash=generate_password_hash(password),
        role=role,
        credits_remaining=0,
        credits_total=0,
    )
    try:
        with db.session.begin_nested():
            db.session.add(user)
    except IntegrityError:
        raise EmailTaken(field="email") from None
    credits.grant_credits(user.id, welcome_credits, "Welcome credits", source="registration")
    return user


def authenticate(email: str, password: str) -> User | None:
    """Return the user whose email and password match, else None."""
    user = find_user_by_email(email or "")
    if user is None:
        check_password_hash(_DUMMY_HASH, password or "")
        return None
    return user if check_password_hash(user.password_hash, password or "") else None


def set_password(user: User, password: str, min_length: int = MIN_PASSWORD_LENGTH) -> None:
    """Raises WeakPassword."""
    check_password_strength(password, user.email, min_length)
    user.password_hash = generate_password_hash(password)
    db.session.flush()


def make_admin(user: User) -> User:
    user.role = UserRole.ADMIN
    db.session.flush()
    return user


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(user_id: int, name: str) -> tuple[ApiToken, str]:
    """Create a token and return it with its plaintext, shown once. Raises ValidationFailed."""
    name = (name or "").strip()
    if not 1 <= len(name) <= 80:
        raise ValidationFailed("Give the token a name of 1 to 80 characters.", field="name")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user_id, name=name, token_hash=_hash_token(plaintext),
                     prefix=plaintext[:10])
    db.session.add(token)
    db.session.flush()
    return token, plaintext


def list_api_tokens(user_id: int) -> list[ApiToken]:
    return list(db.session.execute(
        select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc())
    ).scalars())


def revoke_api_token(user_id: int, token_id: int) -> bool:
    """Revoke one of the user's tokens; False if it is not theirs or already revoked."""
    token = db.session.get(ApiToken, token_id)
    if token is None or token.user_id != user_id or token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    db.session.flush()
    return True


# The owner of an active token, in one statement that loads only the user (each API request
# runs it before anything else).
_TOKEN_OWNER = (
    select(User)
    .join(ApiToken, ApiToken.user_id == User.id)
    .where(ApiToken.token_hash == bindparam("token_hash"), ApiToken.revoked_at.is_(None),
           User.deleted_at.is_(None))
)


def user_for_token(plaintext: str) -> User | None:
    """Return the owner of an active token; None for anything else."""
    if not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 100:
        return None
    return db.session.execute(
        _TOKEN_OWNER, {"token_hash": _hash_token(plaintext)}
    ).scalar_one_or_none()
