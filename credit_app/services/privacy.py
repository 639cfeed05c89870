"""Deleting an account: the person's data goes, the totals stay.

The `users` row is kept as a tombstone (email replaced, password unusable, `deleted_at` set)
because the ledger, generations and subscriptions refer to it: the balance still equals the
sum of the ledger and every total still adds up, but nothing left identifies the person.
Removed or scrubbed: API tokens; generations' prompts, options and files (uploads and results);
free text in ledger metadata; the user id and properties of raw analytics events. The rollups
keep counts keyed by the tombstone's id only.
"""

from __future__ import annotations

import logging
import posixpath
import secrets

from sqlalchemy import delete, select, text, update

from credit_app.billing import subscriptions
from credit_app.errors import (
    AccountAlreadyDeleted,
    StorageUnavailable,
    SubscriptionStillRenews,
    WrongPassword,
)
from credit_app.models import ApiToken, Generation, OutboundEmail, RecoveryCode, UserRole
from credit_app.platform.clock import utcnow
from credit_app.platform.extensions import db
from credit_app.platform.storage import Storage
from credit_app.services import analytics, audit, credits, passwords

log = logging.getLogger(__name__)

DELETED_DOMAIN = "deleted.invalid"
# Ledger metadata keys that say nothing about the person; everything else is dropped.
LEDGER_KEYS_KEPT: tuple[str, ...] = (
    "plan",
    "from",
    "to",
    "expires_at",
    "enforcement",
    "product_id",
)


def delete_account(user_id: int, password: str) -> list[str]:
    """Delete the person's data as described above, in the caller's transaction.

    Returns the storage folders of their uploads and results, to remove once the caller has
    committed (`remove_files`). Raises WrongPassword, SubscriptionStillRenews,
    AccountAlreadyDeleted, UserNotFound.
    """
    user = credits.lock_user(user_id)
    if user.is_deleted:
        raise AccountAlreadyDeleted()
    if not isinstance(password, str) or not passwords.verify_password(user.password_hash, password):
        raise WrongPassword(field="password")
    if subscriptions.get_subscription_status(user.id).can_cancel:
        raise SubscriptionStillRenews()
    folders = {f"{user.id}/"}
    for input_path, output_path in db.session.execute(
        select(Generation.input_path, Generation.output_path).where(Generation.user_id == user.id)
    ):
        folders.update(
            posixpath.dirname(key) + "/"
            for key in (input_path, output_path)
            if key and posixpath.dirname(key).strip("/")
        )
    db.session.execute(
        update(Generation)
        .where(Generation.user_id == user.id)
        .values(options={}, input_path="", output_path=None)
    )
    db.session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    db.session.execute(
        text(
            "UPDATE credit_transactions SET metadata = ("
            " SELECT coalesce(jsonb_object_agg(key, value), '{}'::jsonb)"
            " FROM jsonb_each(coalesce(metadata, '{}'::jsonb)) WHERE key = ANY(:kept))"
            " WHERE user_id = :user_id"
        ),
        {"kept": list(LEDGER_KEYS_KEPT), "user_id": user.id},
    )
    analytics.anonymise_user_events(user.id)
    user.email = f"deleted-{user.id}-{secrets.token_hex(6)}@{DELETED_DOMAIN}"
    user.password_hash = passwords.hash_password(secrets.token_urlsafe(32))
    user.pending_email = None
    user.totp_secret = None
    user.totp_enabled_at = None
    user.session_version += 1
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    db.session.execute(
        delete(OutboundEmail).where(
            OutboundEmail.user_id == user.id, OutboundEmail.sent_at.is_(None)
        )
    )
    db.session.execute(
        update(OutboundEmail)
        .where(OutboundEmail.user_id == user.id)
        .values(to_address=user.email, context={})
    )
    user.role = UserRole.USER
    user.deleted_at = utcnow()
    audit.record(user.id, "account.delete", target_user_id=user.id)
    db.session.flush()
    return sorted(folders)


def remove_files(storage: Storage, folders: list[str]) -> list[str]:
    """Remove the folders `delete_account` returned (after the commit); missing ones are fine,
    and the filesystem backend never removes anything outside its root.

    Returns the folders storage could not remove (it was unreachable), each logged for an
    operator: the account is deleted either way.
    """
    left = []
    for folder in folders:
        try:
            storage.delete_prefix(folder)
        except StorageUnavailable:
            log.error("could not remove stored files under %s of a deleted account", folder)
            left.append(folder)
    return left
