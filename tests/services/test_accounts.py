"""Accounts: welcome credits once per mailbox, disposable domains, argon2id and the rehash of
older hashes, verification, password changes and ending sessions."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, extract_parameters
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from credit_app.errors import (
    DisposableEmail,
    EmailTaken,
    InvalidToken,
    ValidationFailed,
    WeakPassword,
    WrongPassword,
)
from credit_app.models import CreditTransaction
from credit_app.platform.extensions import db
from credit_app.services import account_tokens, accounts, mailboxes, passwords
from tests.conftest import PASSWORD


def welcome_rows(user):
    return (
        db.session.execute(select(CreditTransaction).where(CreditTransaction.user_id == user.id))
        .scalars()
        .all()
    )


class TestMailboxIdentity:
    @pytest.mark.parametrize(
        "address,identity",
        [
            ("A.B+x@gmail.com", "ab@gmail.com"),
            ("a.b@googlemail.com", "ab@gmail.com"),
            ("AB@Gmail.com", "ab@gmail.com"),
            ("a.b+x@example.com", "a.b+x@example.com"),
            ("Person@Example.org", "person@example.org"),
        ],
    )
    def test_folding(self, address, identity):
        assert mailboxes.mailbox_identity(address) == identity

    def test_a_second_account_on_the_same_gmail_mailbox_gets_a_zero_welcome_row(self):
        first = accounts.register_user("ab@gmail.com", PASSWORD)
        second = accounts.register_user("a.b+x@gmail.com", PASSWORD)
        (first_row,) = welcome_rows(first)
        (second_row,) = welcome_rows(second)
        assert (first_row.kind, first_row.amount, first_row.feature_used) == (
            "grant",
            6,
            "registration",
        )
        assert (second_row.kind, second_row.amount, second_row.feature_used) == (
            "grant",
            0,
            "registration",
        )
        assert second_row.metadata_["reason"] == accounts.NO_WELCOME_REASON
        assert (second.credits_remaining, second.credits_total) == (0, 0)
        assert second.email == "a.b+x@gmail.com"

    def test_other_providers_keep_dots_and_tags_apart(self):
        accounts.register_user("a.b@example.com", PASSWORD)
        other = accounts.register_user("ab@example.com", PASSWORD)
        tagged = accounts.register_user("a.b+x@example.com", PASSWORD)
        assert other.credits_remaining == 6 and tagged.credits_remaining == 6

    def test_case_is_folded_for_everyone(self):
        accounts.register_user("Case@Example.net", PASSWORD)
        with pytest.raises(EmailTaken):
            accounts.register_user("case@example.net", PASSWORD)


class TestDisposableDomains:
    @pytest.mark.parametrize(
        "address", ["someone@mailinator.com", "x@sub.mailinator.com", "y@guerrillamail.com"]
    )
    def test_known_throwaway_domains_are_refused_with_a_clear_message(self, address):
        with pytest.raises(DisposableEmail, match="throwaway email services"):
            accounts.register_user(address, PASSWORD)
        assert accounts.find_user_by_email(address) is None

    def test_the_list_comes_from_the_maintained_package(self):
        from disposable_email_domains import blocklist

        assert len(blocklist) > 1000
        assert all(mailboxes.is_disposable(f"a@{domain}") for domain in sorted(blocklist)[:50])
        assert not mailboxes.is_disposable("a@gmail.com")


class TestPasswordHashing:
    def test_new_hashes_are_argon2id_at_owasp_parameters(self, user):
        assert user.password_hash.startswith("$argon2id$")
        found = extract_parameters(user.password_hash)
        assert found.memory_cost >= 19 * 1024 and found.time_cost >= 2
        assert found.parallelism >= 1

    def test_a_werkzeug_scrypt_hash_is_replaced_at_the_next_sign_in(self, user):
        user.password_hash = generate_password_hash(PASSWORD, method="scrypt")
        db.session.commit()
        assert accounts.authenticate(user.email, "wrong password here") is None
        assert user.password_hash.startswith("scrypt:")
        assert accounts.authenticate(user.email, PASSWORD) == user
        assert user.password_hash.startswith("$argon2id$")
        assert passwords.verify_password(user.password_hash, PASSWORD)
        assert not passwords.needs_rehash(user.password_hash)
        assert accounts.authenticate(user.email, PASSWORD) == user

    def test_a_weaker_argon2_hash_is_upgraded(self, user):
        user.password_hash = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(
            PASSWORD
        )
        assert passwords.needs_rehash(user.password_hash)
        accounts.authenticate(user.email, PASSWORD)
        assert not passwords.needs_rehash(user.password_hash)

    def test_unknown_addresses_still_pay_for_a_hash(self, monkeypatch):
        checked = []
        real = passwords.verify_password
        monkeypatch.setattr(
            passwords,
            "verify_password",
            lambda stored, given: checked.append(stored) or real(stored, given),
        )
        assert accounts.authenticate("nobody@example.com", PASSWORD) is None
        assert checked == [passwords.DUMMY_HASH]

    def test_garbage_hashes_do_not_verify(self):
        assert not passwords.verify_password("not a hash", PASSWORD)
        assert passwords.needs_rehash("not a hash")


class TestSessionsAndPasswords:
    def test_get_id_carries_the_session_version(self, user):
        before = user.get_id()
        accounts.end_all_sessions(user)
        assert before == f"{user.id}.0" and user.get_id() == f"{user.id}.1"

    def test_change_password_needs_the_current_one(self, user):
        with pytest.raises(WrongPassword):
            accounts.change_password(user, "not my password", "a brand new secret phrase")
        with pytest.raises(WeakPassword):
            accounts.change_password(user, PASSWORD, "short")
        with pytest.raises(WeakPassword, match="different"):
            accounts.change_password(user, PASSWORD, PASSWORD)
        accounts.change_password(user, PASSWORD, "a brand new secret phrase")
        assert accounts.authenticate(user.email, "a brand new secret phrase") == user
        assert user.session_version == 1

    def test_a_disabled_account_cannot_sign_in(self, user):
        from credit_app.services.credits import utcnow

        user.disabled_at = utcnow()
        assert accounts.authenticate(user.email, PASSWORD) is None


def forged(token: str) -> str:
    """`token` with one character of its signature changed. A middle character carries six
    bits of the HMAC; the last one carries only two, so changing the tail could decode to the
    very same signature (about one time in 256)."""
    position = len(token) - 5
    replacement = "A" if token[position] != "A" else "B"
    return token[:position] + replacement + token[position + 1 :]


class TestResetTokens:
    def test_a_reset_token_works_once(self, user):
        token = account_tokens.reset_token(user)
        assert account_tokens.user_for_reset_token(token) == user
        accounts.reset_password(token, "my new long password")
        with pytest.raises(InvalidToken, match="already used"):
            account_tokens.user_for_reset_token(token)
        assert accounts.authenticate(user.email, "my new long password") == user

    def test_a_reset_ends_every_session(self, user):
        token = account_tokens.reset_token(user)
        old_id = user.get_id()
        accounts.reset_password(token, "my new long password")
        assert user.get_id() != old_id

    def test_an_expired_or_forged_token_is_refused(self, app, user, monkeypatch):
        token = account_tokens.reset_token(user)
        monkeypatch.setitem(app.config, "PASSWORD_RESET_MAX_AGE_SECONDS", -1)
        with pytest.raises(InvalidToken, match="expired"):
            account_tokens.user_for_reset_token(token)
        monkeypatch.setitem(app.config, "PASSWORD_RESET_MAX_AGE_SECONDS", 3600)
        with pytest.raises(InvalidToken):
            account_tokens.user_for_reset_token(forged(token))

    def test_ending_sessions_also_voids_reset_links(self, user):
        token = account_tokens.reset_token(user)
        accounts.end_all_sessions(user)
        with pytest.raises(InvalidToken):
            account_tokens.user_for_reset_token(token)

    def test_a_reset_confirms_the_address(self, make_user):
        user = make_user(verified=False)
        accounts.reset_password(account_tokens.reset_token(user), "my new long password")
        assert user.is_verified


class TestVerification:
    def test_sign_up_is_unverified_and_the_link_verifies(self, make_user):
        user = make_user(verified=False)
        assert not user.is_verified
        token = account_tokens.verification_token(user.id, user.email)
        assert accounts.verify_email(token) == (user, "verified")
        assert user.is_verified
        assert accounts.verify_email(token) == (user, "already verified")

    def test_an_email_change_takes_effect_when_the_new_address_is_confirmed(self, user):
        old = user.email
        accounts.request_email_change(user, "New.Address@Example.com", PASSWORD)
        assert user.email == old and user.pending_email == "new.address@example.com"
        token = account_tokens.verification_token(user.id, "new.address@example.com")
        assert accounts.verify_email(token) == (user, "changed")
        assert user.email == "new.address@example.com" and user.pending_email is None

    def test_an_email_change_is_checked(self, user, make_user):
        other = make_user()
        with pytest.raises(WrongPassword):
            accounts.request_email_change(user, "x@example.com", "wrong password")
        with pytest.raises(EmailTaken):
            accounts.request_email_change(user, other.email, PASSWORD)
        with pytest.raises(DisposableEmail):
            accounts.request_email_change(user, "x@mailinator.com", PASSWORD)
        with pytest.raises(ValidationFailed):
            accounts.request_email_change(user, user.email, PASSWORD)
        assert user.pending_email is None

    def test_a_link_for_an_address_no_longer_asked_for_is_refused(self, user):
        accounts.request_email_change(user, "first@example.com", PASSWORD)
        stale = account_tokens.verification_token(user.id, "first@example.com")
        accounts.request_email_change(user, "second@example.com", PASSWORD)
        with pytest.raises(InvalidToken, match="no longer"):
            accounts.verify_email(stale)

    def test_an_address_taken_meanwhile_is_refused(self, user, make_user):
        accounts.request_email_change(user, "wanted@example.com", PASSWORD)
        make_user("wanted@example.com")
        with pytest.raises(EmailTaken):
            accounts.verify_email(account_tokens.verification_token(user.id, "wanted@example.com"))
