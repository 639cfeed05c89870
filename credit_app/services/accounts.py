"""Accounts: sign-up with its welcome credits, sign-in, verification, password and email
changes, ending sessions, admins, and personal API tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from credit_app.errors import (
    DomainError,
    EmailTaken,
    InvalidToken,
    ValidationFailed,
    WeakPassword,
    WrongPassword,
)
from credit_app.models import ApiToken, User, UserRole, WelcomeMailbox
from credit_app.platform.database import read_fixed
from credit_app.platform.extensions import db
from credit_app.services import account_tokens, credits, mail, mailboxes, passwords
from credit_app.services.credits import utcnow
from credit_app.services.limits import (
    DEFAULT_MIN_PASSWORD_LENGTH,
    MAX_PASSWORD_LENGTH,
    MAX_TOKEN_NAME_LENGTH,
)
from credit_app.services.mailboxes import normalize_email

WELCOME_CREDITS = 6
MIN_PASSWORD_LENGTH = DEFAULT_MIN_PASSWORD_LENGTH
TOKEN_PREFIX = "ca_"
COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "password123",
        "1234567890",
        "12345678910",
        "qwertyuiop",
        "iloveyou123",
        "letmein123",
        "welcome123",
        "passw0rd123",
        "qwerty12345",
        "abc1234567",
    }
)
NO_WELCOME_REASON = (
    "No welcome credits: an account on this mailbox already received them "
    "(addresses that reach the same mailbox count once)"
)


def check_password_strength(
    password: str, email: str = "", min_length: int = MIN_PASSWORD_LENGTH
) -> None:
    """Raises WeakPassword with a message a person can act on."""
    if not isinstance(password, str) or len(password) < min_length:
        raise WeakPassword(
            f"Use at least {min_length} characters for your password.", field="password"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(
            f"Use at most {MAX_PASSWORD_LENGTH} characters for your password.", field="password"
        )
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS or len(set(password)) < 4:
        raise WeakPassword("That password is too easy to guess; choose another.", field="password")
    if email and lowered == email.lower():
        raise WeakPassword("Your password must not be your email address.", field="password")


def find_user_by_email(email: str) -> User | None:
    return db.session.execute(
        select(User).where(func.lower(User.email) == email.strip().lower())
    ).scalar_one_or_none()


def signup_problems(
    email: str, password: str, min_password_length: int = MIN_PASSWORD_LENGTH
) -> list[DomainError]:
    """Every reason register_user would refuse these details, all at once (a bad or
    disposable or taken email, and a weak password), so the form can show them together;
    empty fields are left to the form's own "required". Raises nothing."""
    problems: list[DomainError] = []
    checked_email = email or ""
    if email:
        try:
            checked_email = normalize_email(email)
            mailboxes.check_not_disposable(checked_email)
            if find_user_by_email(checked_email) is not None:
                raise EmailTaken(field="email")
        except DomainError as exc:
            problems.append(exc)
    if password:
        try:
            check_password_strength(password, checked_email, min_password_length)
        except DomainError as exc:
            problems.append(exc)
    return problems


def register_user(
    email: str,
    password: str,
    role: UserRole = UserRole.USER,
    welcome_credits: int = WELCOME_CREDITS,
    min_password_length: int = MIN_PASSWORD_LENGTH,
    verified: bool = False,
) -> User:
    """Create the account and write its welcome row in the same transaction: the welcome
    credits the first time a mailbox signs up, 0 with the reason after that.

    Raises ValidationFailed (bad email), DisposableEmail, WeakPassword, EmailTaken.
    """
    email = normalize_email(email)
    mailboxes.check_not_disposable(email)
    check_password_strength(password, email, min_password_length)
    if find_user_by_email(email) is not None:
        raise EmailTaken(field="email")
    user = User(
        email=email,
        password_hash=passwords.hash_password(password),
        role=role,
        credits_remaining=0,
        credits_total=0,
        email_verified_at=utcnow() if verified else None,
    )
    try:
        with db.session.begin_nested():
            db.session.add(user)
    except IntegrityError:
        raise EmailTaken(field="email") from None
    first = db.session.execute(
        insert(WelcomeMailbox)
        .values(mailbox_hash=mailboxes.mailbox_hash(email), user_id=user.id)
        .on_conflict_do_nothing(index_elements=["mailbox_hash"])
        .returning(WelcomeMailbox.mailbox_hash)
    ).scalar_one_or_none()
    if first is not None:
        credits.grant_welcome_credits(user.id, welcome_credits, "Welcome credits")
    else:
        credits.grant_welcome_credits(user.id, 0, NO_WELCOME_REASON)
    return user


def authenticate(email: str, password: str) -> User | None:
    """Return the user whose email and password match, else None (also for a disabled
    account). A hash in an older format, or made with weaker parameters, is replaced by an
    argon2id one (flushed; the caller commits)."""
    user = find_user_by_email(email or "")
    if user is None or user.is_deleted:
        passwords.verify_password(passwords.DUMMY_HASH, password or "")
        return None
    if not passwords.verify_password(user.password_hash, password or ""):
        return None
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
        db.session.flush()
    return None if user.is_disabled else user


def set_password(user: User, password: str, min_length: int = MIN_PASSWORD_LENGTH) -> None:
    """Set a new password and end every session of the user. Raises WeakPassword."""
    check_password_strength(password, user.email, min_length)
    user.password_hash = passwords.hash_password(password)
    end_all_sessions(user)


def change_password(
    user: User, current: str, new: str, min_length: int = MIN_PASSWORD_LENGTH
) -> None:
    """Raises WrongPassword (current one wrong), WeakPassword."""
    if not passwords.verify_password(user.password_hash, current or ""):
        raise WrongPassword("That is not your current password.", field="current_password")
    if current == new:
        raise WeakPassword("Choose a password different from the current one.", field="password")
    set_password(user, new, min_length)
    mail.queue_email(user.email, "password_changed", user_id=user.id)


def end_all_sessions(user: User) -> None:
    """Sign the user out everywhere: every session and remember-me cookie stops working."""
    user.session_version += 1
    db.session.flush()


def request_password_reset(email: str) -> None:
    """Mail a reset link if the address belongs to an active account; nothing otherwise (the
    caller answers the same either way)."""
    try:
        address = normalize_email(email)
    except ValidationFailed:
        return
    user = find_user_by_email(address)
    if user is None or user.is_deleted or user.is_disabled:
        return
    mail.queue_email(user.email, "password_reset", user_id=user.id)


def reset_password(token: str, password: str, min_length: int = MIN_PASSWORD_LENGTH) -> User:
    """Set the password a reset link was for; ends every session; the link cannot be used
    again. Following the link proves the address, so it counts as verified.

    Raises InvalidToken, WeakPassword.
    """
    user = account_tokens.user_for_reset_token(token)
    if user.is_disabled:
        raise InvalidToken("That account is disabled; contact support.")
    set_password(user, password, min_length)
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    db.session.flush()
    return user


def send_verification(user: User) -> None:
    """Mail a confirmation link to the user's address (a no-op when already verified)."""
    if user.is_verified:
        return
    mail.queue_email(user.email, "verify_email", user_id=user.id)


def request_email_change(user: User, new_email: str, password: str) -> str:
    """Mail a confirmation link to `new_email`; the address changes when it is followed.

    Raises WrongPassword, ValidationFailed, DisposableEmail, EmailTaken.
    """
    if not passwords.verify_password(user.password_hash, password or ""):
        raise WrongPassword(field="password")
    address = normalize_email(new_email)
    if address == user.email:
        raise ValidationFailed("That is already your address.", field="new_email")
    mailboxes.check_not_disposable(address)
    if find_user_by_email(address) is not None:
        raise EmailTaken(field="new_email")
    user.pending_email = address
    db.session.flush()
    mail.queue_email(address, "change_email", user_id=user.id)
    return address


def verify_email(token: str) -> tuple[User, str]:
    """Apply a confirmation link: verify the sign-up address, or move to the new one.

    Returns the user and "verified", "changed" or "already verified".
    Raises InvalidToken (bad, expired, or for an address no longer asked for), EmailTaken.
    """
    user_id, address = account_tokens.read_verification_token(token)
    user = db.session.get(User, user_id)
    if user is None or user.is_deleted:
        raise InvalidToken()
    if address == user.email:
        if user.is_verified:
            return user, "already verified"
        user.email_verified_at = utcnow()
        db.session.flush()
        return user, "verified"
    if address != user.pending_email:
        raise InvalidToken(
            "That confirmation link is for an address this account no longer asks for."
        )
    if find_user_by_email(address) is not None:
        raise EmailTaken("Another account took that address meanwhile.")
    user.email = address
    user.pending_email = None
    user.email_verified_at = utcnow()
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError:
        raise EmailTaken("Another account took that address meanwhile.") from None
    return user, "changed"


def make_admin(user: User) -> User:
    user.role = UserRole.ADMIN
    db.session.flush()
    return user


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(user_id: int, name: str) -> tuple[ApiToken, str]:
    """Create a token and return it with its plaintext, shown once. Raises ValidationFailed."""
    name = (name or "").strip()
    if not 1 <= len(name) <= MAX_TOKEN_NAME_LENGTH:
        raise ValidationFailed(
            f"Give the token a name of 1 to {MAX_TOKEN_NAME_LENGTH} characters.", field="name"
        )
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user_id, name=name, token_hash=_hash_token(plaintext), prefix=plaintext[:10]
    )
    db.session.add(token)
    db.session.flush()
    return token, plaintext


def list_api_tokens(user_id: int) -> list[ApiToken]:
    return list(
        db.session.execute(
            select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc())
        ).scalars()
    )


def revoke_api_token(user_id: int, token_id: int) -> bool:
    """Revoke one of the user's tokens; False if it is not theirs or already revoked."""
    token = db.session.get(ApiToken, token_id)
    if token is None or token.user_id != user_id or token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    db.session.flush()
    return True


@dataclass(frozen=True, slots=True)
class Account:
    """An account as the JSON API sees it: who it is, its role, and its balance columns, read
    in one statement without building an ORM `User`. Duck-types the parts of `User` that
    `credits.credits_of` and the API's role checks read."""

    id: int
    role: str
    credits_remaining: int
    credits_total: int
    subscription_status: str
    updated_at: datetime
    has_two_factor: bool

    @property
    def is_admin(self) -> bool:
        return self.role == UserRole.ADMIN

    @classmethod
    def of(cls, user: User) -> Account:
        """The account of a loaded user (a session's)."""
        return cls(
            user.id,
            user.role,
            user.credits_remaining,
            user.credits_total,
            user.subscription_status,
            user.updated_at,
            user.has_two_factor,
        )


# Every request with a bearer token runs this first, outside any transaction
# (database.read_fixed): a token GET needs nothing else from PostgreSQL.
TOKEN_OWNER_SQL = (
    "SELECT users.id, users.role, users.credits_remaining, users.credits_total, "
    "users.subscription_status, users.updated_at, users.totp_enabled_at IS NOT NULL "
    "FROM users JOIN api_tokens ON api_tokens.user_id = users.id "
    "WHERE api_tokens.token_hash = %(token_hash)s AND api_tokens.revoked_at IS NULL "
    "AND users.deleted_at IS NULL AND users.disabled_at IS NULL"
)
MAX_TOKEN_LENGTH = 100


def token_owner(plaintext: str) -> Account | None:
    """The account owning an active token, if it is neither deleted nor disabled; None for
    anything else.

    Raises sqlalchemy.exc.DBAPIError's subclass when the database fails.
    """
    if not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > MAX_TOKEN_LENGTH:
        return None
    row = read_fixed(TOKEN_OWNER_SQL, {"token_hash": _hash_token(plaintext)}).fetchone()
    return None if row is None else Account(*row)


def record_admin_sign_in(user: User, method: str, address: str | None) -> None:
    """Audit an admin's sign-in (method: password, totp or recovery)."""
    from credit_app.services import audit

    audit.record(
        user.id,
        "staff.sign_in",
        target_user_id=user.id,
        details={"method": method, "address": address},
    )


def record_failed_sign_in(email: str, why: str, address: str | None) -> None:
    """Audit a failed sign-in when the address is an admin account's (others are not logged)."""
    from credit_app.services import audit

    try:
        user = find_user_by_email(normalize_email(email))
    except ValidationFailed:
        return
    if user is not None and user.is_admin:
        audit.record(
            None,
            "staff.sign_in_failed",
            target_user_id=user.id,
            details={"why": why, "address": address},
        )


def record_two_factor_enabled(user: User) -> None:
    from credit_app.services import audit

    audit.record(user.id, "staff.two_factor_enabled", target_user_id=user.id)
