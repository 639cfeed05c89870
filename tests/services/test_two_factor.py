"""Admin two-factor: TOTP codes (with drift, never twice), recovery codes (once each)."""

from __future__ import annotations

import pyotp
import pytest

from credit_app.errors import InvalidTwoFactorCode
from credit_app.models import UserRole
from credit_app.services import two_factor

NOW = 2_000_000_000.0


@pytest.fixture
def admin(make_user):
    user = make_user(role=UserRole.ADMIN)
    assert user.totp_secret is None
    two_factor.ensure_secret(user)
    return user


def code_at(user, at: float) -> str:
    return pyotp.TOTP(user.totp_secret).at(at)


def test_enabling_needs_a_right_code_and_returns_ten_recovery_codes(admin):
    secret = two_factor.ensure_secret(admin)
    assert two_factor.ensure_secret(admin) == secret
    assert "otpauth://totp/Roomcraft:" in two_factor.provisioning_uri(admin)
    assert two_factor.qr_code_data_uri(admin).startswith("data:image/svg+xml")
    with pytest.raises(InvalidTwoFactorCode):
        two_factor.enable(admin, "000000" if code_at(admin, NOW) != "000000" else "111111", NOW)
    assert not admin.has_two_factor
    codes = two_factor.enable(admin, code_at(admin, NOW), NOW)
    assert admin.has_two_factor and len(codes) == 10 and len(set(codes)) == 10
    assert two_factor.recovery_codes_left(admin) == 10


def test_a_code_works_once_and_with_one_step_of_drift(admin):
    two_factor.enable(admin, code_at(admin, NOW), NOW)
    assert not two_factor.check_totp(admin, code_at(admin, NOW), NOW)
    later = NOW + 60
    assert two_factor.check_totp(admin, code_at(admin, later - 30), later)
    assert not two_factor.check_totp(admin, code_at(admin, later - 30), later)
    assert not two_factor.check_totp(admin, code_at(admin, later + 300), later)
    assert two_factor.verify(admin, code_at(admin, later + 30), later) == "totp"


def test_recovery_codes_work_once_each(admin):
    codes = two_factor.enable(admin, code_at(admin, NOW), NOW)
    assert two_factor.verify(admin, codes[0].upper(), NOW) == "recovery"
    with pytest.raises(InvalidTwoFactorCode):
        two_factor.verify(admin, codes[0], NOW)
    assert two_factor.recovery_codes_left(admin) == 9
    fresh = two_factor.new_recovery_codes(admin)
    with pytest.raises(InvalidTwoFactorCode):
        two_factor.verify(admin, codes[1], NOW)
    assert two_factor.verify(admin, fresh[1], NOW) == "recovery"


@pytest.mark.parametrize("code", ["", "12345", "abcdef", "x" * 50])
def test_malformed_codes_are_refused(admin, code):
    two_factor.enable(admin, code_at(admin, NOW), NOW)
    with pytest.raises(InvalidTwoFactorCode):
        two_factor.verify(admin, code, NOW + 90)
