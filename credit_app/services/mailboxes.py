"""Email addresses: validation, refusing disposable domains, and the mailbox identity that the
welcome grant is given once per.

The disposable list is the `disposable-email-domains` package's (a maintained blocklist).
"""

from __future__ import annotations

import hashlib

from disposable_email_domains import blocklist
from email_validator import EmailNotValidError, validate_email

from credit_app.errors import DisposableEmail, ValidationFailed

# Providers that deliver a.b+anything@ to ab@ (and both names are one mailbox).
DOT_AND_TAG_BLIND_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def normalize_email(email: str) -> str:
    """Return the canonical form of an email address. Raises ValidationFailed."""
    try:
        result = validate_email(email or "", check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationFailed(f"That email address is not valid: {exc}", field="email") from None
    return result.normalized.lower()


def is_disposable(email: str) -> bool:
    """True when the address's domain, or a domain it is under, is a known throwaway one."""
    labels = email.rpartition("@")[2].lower().split(".")
    return any(".".join(labels[index:]) in blocklist for index in range(len(labels) - 1))


def check_not_disposable(email: str) -> None:
    """Raises DisposableEmail for a known throwaway domain."""
    if is_disposable(email):
        raise DisposableEmail(field="email")


def mailbox_identity(email: str) -> str:
    """The mailbox an address delivers to: lower-case, and for Gmail without dots and +tag."""
    local, _, domain = email.strip().lower().rpartition("@")
    if domain in DOT_AND_TAG_BLIND_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        domain = DOT_AND_TAG_BLIND_DOMAINS[domain]
    return f"{local}@{domain}"


def mailbox_hash(email: str) -> str:
    return hashlib.sha256(mailbox_identity(email).encode()).hexdigest()
