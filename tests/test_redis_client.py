"""One factory for every Redis client: each has a time budget, TLS URLs work."""

from __future__ import annotations

import ssl

import pytest
import redis

from credit_app.platform import config
from credit_app.platform.redis_client import BUDGETS, connection_options, make_client
from tests.test_config import clean_env

__all__ = ["clean_env"]  # the fixture, shared with the config tests


@pytest.mark.parametrize("purpose", list(BUDGETS))
def test_every_client_has_a_connect_timeout_and_all_but_the_worker_a_socket_timeout(purpose):
    client = make_client("redis://cache.internal:6379/0", purpose)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_connect_timeout"] == BUDGETS[purpose].connect_timeout
    assert kwargs["socket_timeout"] == BUDGETS[purpose].socket_timeout
    if purpose != "worker":  # rq sets the worker's above its blocking dequeue
        assert kwargs["socket_timeout"] is not None
    assert kwargs["retry"].get_retries() == BUDGETS[purpose].retries


def test_a_timeout_is_never_retried_by_the_app_client():
    retry = make_client("redis://cache.internal:6379/0", "app").connection_pool.connection_kwargs[
        "retry"
    ]
    assert redis.ConnectionError in retry._supported_errors
    assert redis.TimeoutError not in retry._supported_errors
    assert BUDGETS["app"].worst_case_seconds <= 2


def test_rediss_urls_use_tls_without_verifying_heroku_s_self_signed_certificate():
    client = make_client("rediss://:secret@ec2-1-2-3-4.compute-1.amazonaws.com:6380/0", "app")
    pool = client.connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.connection_kwargs["ssl_cert_reqs"] == "none"
    assert pool.connection_kwargs["password"] == "secret"
    assert pool.connection_kwargs["port"] == 6380
    connection = pool.make_connection()
    assert connection.cert_reqs == ssl.CERT_NONE


def test_verified_tls_when_asked():
    client = make_client(
        "rediss://cache.internal:6380/0",
        "monitoring",
        ssl_cert_reqs="required",
        ssl_ca_certs="/etc/ssl/certs/ca-certificates.crt",
    )
    connection = client.connection_pool.make_connection()
    assert connection.cert_reqs == ssl.CERT_REQUIRED
    assert connection.ca_certs == "/etc/ssl/certs/ca-certificates.crt"


def test_plain_and_unix_urls_get_no_tls_options():
    for url in ("redis://cache.internal:6379/0", "unix:///tmp/redis.sock?db=3"):
        assert "ssl_cert_reqs" not in connection_options(url, BUDGETS["app"])
    client = make_client("unix:///tmp/redis.sock?db=3", "app")
    assert client.connection_pool.connection_kwargs["path"] == "/tmp/redis.sock"
    assert client.connection_pool.connection_kwargs["db"] == 3


def test_an_unknown_cert_policy_is_refused():
    with pytest.raises(ValueError):
        connection_options("rediss://cache:6380", BUDGETS["app"], ssl_cert_reqs="maybe")


def test_the_limiter_storage_gets_the_same_budget_and_tls(clean_env):
    clean_env.setenv("DATABASE_URL", "postgres://u:p@db.internal:5432/app")
    clean_env.setenv("REDIS_URL", "rediss://:pw@cache.internal:6380/0")
    settings = config.load_config("development")
    options = settings["RATELIMIT_STORAGE_OPTIONS"]
    assert settings["RATELIMIT_STORAGE_URI"] == "rediss://:pw@cache.internal:6380/0"
    assert options["socket_timeout"] == BUDGETS["app"].socket_timeout
    assert options["socket_connect_timeout"] == BUDGETS["app"].connect_timeout
    assert options["ssl_cert_reqs"] == "none"
    assert settings["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] is True
    from limits.storage import storage_from_string

    storage = storage_from_string(settings["RATELIMIT_STORAGE_URI"], **options)
    kwargs = storage.get_connection().connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == BUDGETS["app"].socket_timeout
    assert kwargs["ssl_cert_reqs"] == "none"


def test_a_bad_cert_policy_in_the_environment_is_a_config_error(clean_env):
    clean_env.setenv("DATABASE_URL", "postgres://u:p@db.internal:5432/app")
    clean_env.setenv("REDIS_URL", "rediss://cache.internal:6380/0")
    clean_env.setenv("REDIS_SSL_CERT_REQS", "sometimes")
    with pytest.raises(config.ConfigError, match="REDIS_SSL_CERT_REQS"):
        config.load_config("development")
