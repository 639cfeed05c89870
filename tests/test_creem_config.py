"""Creem settings: the real API with a key, the local stand-in without one, and fail-fast
production."""

import pytest

from credit_app.platform import config
from credit_app.platform.config import ConfigError, load_config

pytestmark = pytest.mark.no_db  # no database, no app

CREEM_VARIABLES = (
    "CREEM_API_KEY",
    "CREEM_WEBHOOK_SECRET",
    "CREEM_API_URL",
    "CREEM_PRODUCT_PRO_MONTHLY",
    "CREEM_PRODUCT_PRO_YEARLY",
    "ALLOW_EMBEDDED_SERVICES",
    "PAST_DUE_GRACE_DAYS",
)


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in CREEM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    return monkeypatch


def real_creem(env, key="creem_live_abc"):
    env.setenv("CREEM_API_KEY", key)
    env.setenv("CREEM_WEBHOOK_SECRET", "whsec_real")
    env.setenv("CREEM_PRODUCT_PRO_MONTHLY", "prod_month")
    env.setenv("CREEM_PRODUCT_PRO_YEARLY", "prod_year")


def test_without_a_key_development_uses_the_stand_in(env, tmp_path):
    settings = config._creem_config("development")
    assert settings["CREEM_STAND_IN"] is True
    assert settings["CREEM_API_URL"] == config.CREEM_STAND_IN_URL
    assert settings["CREEM_API_KEY"] == config.CREEM_STAND_IN_API_KEY
    assert settings["CREEM_PRODUCT_PRO_MONTHLY"] == "prod_standin_pro_monthly"
    assert settings["CREEM_WEBHOOK_SECRET"] is None  # the dev secret, at provisioning
    assert config._creem_config("testing")["CREEM_WEBHOOK_SECRET"] is None
    assert not (tmp_path / "dev-creem-webhook-secret").exists()
    assert settings["PAST_DUE_GRACE_DAYS"] == 3


def test_a_test_key_talks_to_the_test_api_and_a_live_key_to_the_live_one(env):
    real_creem(env, "creem_test_123")
    settings = config._creem_config("development")
    assert settings["CREEM_API_URL"] == "https://test-api.creem.io"
    assert settings["CREEM_STAND_IN"] is False
    assert settings["CREEM_WEBHOOK_SECRET"] == "whsec_real"
    real_creem(env, "creem_live_123")
    assert config._creem_config("production")["CREEM_API_URL"] == "https://api.creem.io"
    env.setenv("CREEM_API_URL", "https://proxy.internal")
    assert config._creem_config("production")["CREEM_API_URL"] == "https://proxy.internal"


def test_production_fails_fast_without_creem(env):
    with pytest.raises(ConfigError, match="CREEM_API_KEY and CREEM_WEBHOOK_SECRET"):
        config._creem_config("production")
    env.setenv("CREEM_API_KEY", "creem_live_abc")
    with pytest.raises(ConfigError, match="CREEM_WEBHOOK_SECRET"):
        config._creem_config("production")


def test_a_demo_box_may_run_production_on_the_stand_in(env):
    env.setenv("ALLOW_EMBEDDED_SERVICES", "1")
    assert config._creem_config("production")["CREEM_STAND_IN"] is True


def test_a_key_needs_its_secret_and_product_ids(env):
    env.setenv("CREEM_API_KEY", "creem_test_abc")
    with pytest.raises(ConfigError, match="CREEM_WEBHOOK_SECRET must be set together"):
        config._creem_config("development")
    env.setenv("CREEM_WEBHOOK_SECRET", "whsec")
    with pytest.raises(ConfigError, match="CREEM_PRODUCT_PRO_MONTHLY and CREEM_PRODUCT_PRO_YEARLY"):
        config._creem_config("development")


def test_grace_days_must_be_a_number(env):
    env.setenv("PAST_DUE_GRACE_DAYS", "three")
    with pytest.raises(ConfigError, match="PAST_DUE_GRACE_DAYS"):
        config._creem_config("development")


def test_load_config_includes_the_creem_settings(env):
    env.setenv("SECRET_KEY", "s" * 32)
    env.setenv("DATABASE_URL", "postgresql://db/app")
    env.setenv("REDIS_URL", "redis://cache:6379/0")
    env.setenv("MAIL_URL", "smtp://user:pass@smtp.mail.internal:587")
    real_creem(env)
    settings = load_config("production")
    assert settings["CREEM_API_KEY"] == "creem_live_abc"
    assert settings["CREEM_PRODUCT_PRO_YEARLY"] == "prod_year"
