"""Configuration read from the environment, failing fast on what production needs."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The largest photo a generation form takes (credit_app/services/limits.py reads it from here);
# a request may be larger by the rest of the form.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_REQUEST_BYTES = MAX_UPLOAD_BYTES + 2 * 1024 * 1024
DEFAULT_MIN_PASSWORD_LENGTH = 10


class ConfigError(RuntimeError):
    """Raised at start-up when the environment cannot run the app safely."""


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _number(name: str, default: float, parse: type, what: str):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return parse(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be {what}, got {value!r}") from exc


def _int(name: str, default: int) -> int:
    """Raises ConfigError for a value that is not a whole number."""
    return _number(name, default, int, "a whole number")


def _float(name: str, default: float) -> float:
    """Raises ConfigError for a value that is not a number."""
    return _number(name, default, float, "a number")


def instance_path() -> Path:
    """Where local state lives: the embedded servers' data, uploads, the dev secrets."""
    return Path(os.environ.get("INSTANCE_PATH", PROJECT_ROOT / "instance")).resolve()


def _sqlalchemy_url(url: str) -> str:
    """Use the psycopg 3 driver whatever spelling the platform hands us."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# The embedded servers load_config can ask for, each with the variable that would have named an
# outside server instead and the setting its URL goes into (an override of that setting means
# the server is not needed).
EMBEDDED_SERVERS: dict[str, tuple[str, str]] = {
    "postgres": ("DATABASE_URL", "SQLALCHEMY_DATABASE_URI"),
    "redis": ("REDIS_URL", "REDIS_URL"),
}


def _service_urls(env: str) -> tuple[str, str]:
    """The database and Redis URLs the environment names, "" for one it leaves unset (the
    tests' database is TEST_DATABASE_URL)."""
    database_variable = "TEST_DATABASE_URL" if env == "testing" else "DATABASE_URL"
    return (os.environ.get(database_variable, ""), os.environ.get("REDIS_URL", ""))


def _embedded_services(env: str, database_url: str, redis_url: str) -> tuple[str, ...]:
    """The embedded servers to provision for the URLs that are unset (`postgres`, `redis`).

    Raises ConfigError in production when a URL is missing and embedded servers are not allowed.
    """
    missing = tuple(
        name for name, url in (("postgres", database_url), ("redis", redis_url)) if not url
    )
    if missing and env == "production" and not _flag("ALLOW_EMBEDDED_SERVICES"):
        raise ConfigError(
            f"{' and '.join(EMBEDDED_SERVERS[name][0] for name in missing)} must be set in "
            "production (or set ALLOW_EMBEDDED_SERVICES=1 to run on the embedded servers)"
        )
    return missing


def service_settings(
    database_url: str | None,
    redis_url: str | None,
    *,
    ssl_cert_reqs: str = "none",
    ssl_ca_certs: str | None = None,
) -> dict:
    """The settings that follow from the database and Redis URLs: SQLAlchemy's URL (with the
    psycopg 3 driver), REDIS_URL, and flask-limiter's storage URI and connection options.

    A URL given as None (a server still to be provisioned) contributes nothing. Used by
    load_config for the URLs the environment names and by the provisioning of the embedded
    servers (platform/local_services.py) for the ones it starts. Raises ValueError for an
    unknown `ssl_cert_reqs` (load_config has checked REDIS_SSL_CERT_REQS before).
    """
    from credit_app.platform.redis_client import limiter_storage_options

    settings: dict = {}
    if database_url is not None:
        settings["SQLALCHEMY_DATABASE_URI"] = _sqlalchemy_url(database_url)
    if redis_url is not None:
        settings["REDIS_URL"] = redis_url
        settings["RATELIMIT_STORAGE_URI"] = _limits_storage_uri(redis_url)
        settings["RATELIMIT_STORAGE_OPTIONS"] = limiter_storage_options(
            redis_url, ssl_cert_reqs, ssl_ca_certs
        )
    return settings


def _secret_key(env: str) -> str | None:
    """SECRET_KEY, or None outside production: then the factory's provisioning step reads (and
    first creates) `instance/dev-secret-key`.

    Raises ConfigError when production has no SECRET_KEY.
    """
    secret = os.environ.get("SECRET_KEY", "")
    if secret:
        return secret
    if env == "production":
        raise ConfigError("SECRET_KEY must be set in production")
    return None


CREEM_LIVE_API_URL = "https://api.creem.io"
CREEM_TEST_API_URL = "https://test-api.creem.io"
CREEM_STAND_IN_URL = "http://127.0.0.1:5056"
CREEM_STAND_IN_API_KEY = "creem_stand_in_key"
CREEM_STAND_IN_PRODUCTS = {
    "CREEM_PRODUCT_PRO_MONTHLY": "prod_standin_pro_monthly",
    "CREEM_PRODUCT_PRO_YEARLY": "prod_standin_pro_yearly",
}
# The top-up packs: (key, env prefix, default credits, default price, the stand-in's product).
CREDIT_PACK_DEFAULTS: tuple[tuple[str, str, int, str, str], ...] = (
    ("pack_20", "PACK_20", 20, "$5", "prod_standin_pack_20"),
    ("pack_60", "PACK_60", 60, "$12", "prod_standin_pack_60"),
)
REFILL_PERIODS = ("weekly", "monthly")


def _creem_config(env: str) -> dict:
    """Creem settings: the real API with a key, else the local stand-in (not in production).

    Without CREEM_WEBHOOK_SECRET the secret is None: the factory's provisioning step reads (and
    first creates) `instance/dev-creem-webhook-secret`, which the stand-in shares.

    Raises ConfigError when production lacks the key or the webhook secret (unless
    ALLOW_EMBEDDED_SERVICES makes it a demo box), or when a key comes without its webhook
    secret or product ids.
    """
    api_key = os.environ.get("CREEM_API_KEY", "").strip()
    webhook_secret = os.environ.get("CREEM_WEBHOOK_SECRET", "").strip()
    stand_in = not api_key
    if (
        env == "production"
        and not (api_key and webhook_secret)
        and not _flag("ALLOW_EMBEDDED_SERVICES")
    ):
        raise ConfigError(
            "CREEM_API_KEY and CREEM_WEBHOOK_SECRET must be set in production "
            "(or set ALLOW_EMBEDDED_SERVICES=1 to run on the Creem stand-in)"
        )
    if api_key and not webhook_secret:
        raise ConfigError("CREEM_WEBHOOK_SECRET must be set together with CREEM_API_KEY")
    products = {name: os.environ.get(name, "").strip() for name in CREEM_STAND_IN_PRODUCTS}
    if stand_in:
        products = {
            name: value or CREEM_STAND_IN_PRODUCTS[name] for name, value in products.items()
        }
    missing = [name for name, value in products.items() if not value]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} must be set together with CREEM_API_KEY")
    if stand_in:
        default_url = CREEM_STAND_IN_URL
    elif api_key.startswith("creem_test_"):
        default_url = CREEM_TEST_API_URL
    else:
        default_url = CREEM_LIVE_API_URL
    return {
        "CREEM_API_KEY": api_key or CREEM_STAND_IN_API_KEY,
        "CREEM_WEBHOOK_SECRET": webhook_secret or None,
        "CREEM_API_URL": os.environ.get("CREEM_API_URL", "").strip() or default_url,
        "CREEM_STAND_IN": stand_in,
        "CREEM_TIMEOUT_SECONDS": _int("CREEM_TIMEOUT_SECONDS", 10),
        **products,
        "PRO_MONTHLY_NAME": os.environ.get("PRO_MONTHLY_NAME", "Pro monthly"),
        "PRO_MONTHLY_PRICE": os.environ.get("PRO_MONTHLY_PRICE", "$19 / month"),
        "PRO_YEARLY_NAME": os.environ.get("PRO_YEARLY_NAME", "Pro yearly"),
        "PRO_YEARLY_PRICE": os.environ.get("PRO_YEARLY_PRICE", "$190 / year"),
        "PAST_DUE_GRACE_DAYS": _int("PAST_DUE_GRACE_DAYS", 3),
        "CREDIT_PACKS": _pack_config(stand_in),
    }


def _pack_config(stand_in: bool) -> list[dict]:
    """The credit packs, each a Creem one-time product: CREEM_PRODUCT_PACK_20 (its product id;
    the stand-in's by default, none with a real Creem key, so the pack is not sold),
    PACK_20_CREDITS, PACK_20_NAME, PACK_20_PRICE; the same for PACK_60.

    Raises ConfigError for a pack of fewer than 1 credit.
    """
    found = []
    for key, prefix, credits, price, stand_in_product in CREDIT_PACK_DEFAULTS:
        product = os.environ.get(f"CREEM_PRODUCT_{prefix}", "").strip()
        amount = _int(f"{prefix}_CREDITS", credits)
        if amount < 1:
            raise ConfigError(f"{prefix}_CREDITS must be at least 1")
        found.append(
            {
                "key": key,
                "product_id": product or (stand_in_product if stand_in else ""),
                "name": os.environ.get(f"{prefix}_NAME", f"{amount} credits"),
                "price": os.environ.get(f"{prefix}_PRICE", price),
                "credits": amount,
            }
        )
    return found


def _credits_config() -> dict:
    """Lot expiry and the free tier's periodic refill (off unless FREE_REFILL_TO is set).

    Raises ConfigError for a negative setting or an unknown FREE_REFILL_PERIOD.
    """
    period = os.environ.get("FREE_REFILL_PERIOD", "monthly").strip().lower()
    if period not in REFILL_PERIODS:
        raise ConfigError(
            f"FREE_REFILL_PERIOD must be one of {', '.join(REFILL_PERIODS)}, got {period!r}"
        )
    values = {
        "FREE_REFILL_TO": _int("FREE_REFILL_TO", 0),
        "FREE_REFILL_PERIOD": period,
        "WELCOME_CREDITS_EXPIRE_DAYS": _int("WELCOME_CREDITS_EXPIRE_DAYS", 0),
        "CREDIT_EXPIRY_INTERVAL_SECONDS": _int("CREDIT_EXPIRY_INTERVAL_SECONDS", 60),
        "FREE_REFILL_INTERVAL_SECONDS": _int("FREE_REFILL_INTERVAL_SECONDS", 3600),
    }
    negative = [name for name, value in values.items() if isinstance(value, int) and value < 0]
    if negative:
        raise ConfigError(f"{', '.join(negative)} must not be negative")
    return values


POSITIVE_SETTINGS = (
    "SWEEP_INTERVAL_SECONDS",
    "RESERVATION_TIMEOUT_SECONDS",
    "GENERATION_JOB_TIMEOUT_SECONDS",
    "WORKER_HEARTBEAT_INTERVAL_SECONDS",
    "ANALYTICS_ROLLUP_INTERVAL_SECONDS",
    "CREEM_RECONCILE_INTERVAL_SECONDS",
    "PRO_FAIR_USE_DAILY_GENERATIONS",
    "FAIR_USE_RESERVATION_TIMEOUT_SECONDS",
)


def _check_work_settings(config: dict) -> None:
    """Raises ConfigError for settings the background work cannot run with."""
    for name in POSITIVE_SETTINGS:
        if name in config and config[name] <= 0:
            raise ConfigError(f"{name} must be a positive number of seconds")
    if config["RESERVATION_TIMEOUT_SECONDS"] <= config["GENERATION_JOB_TIMEOUT_SECONDS"]:
        raise ConfigError(
            "RESERVATION_TIMEOUT_SECONDS must exceed "
            "GENERATION_JOB_TIMEOUT_SECONDS, or holds expire under running jobs"
        )
    if config["GENERATION_PROVIDER"] not in ("local", "http"):
        raise ConfigError("GENERATION_PROVIDER must be 'local' or 'http'")


# Per gunicorn worker process (README "Sizing dynos and the database" has the arithmetic per
# Heroku Postgres plan). A fixed-size pool: overflow connections were opened and closed again
# with every burst (one new PostgreSQL session per 5-10 requests under the closed-loop bench),
# and each costs a backend fork and fresh prepared statements. Requests beyond the pool wait
# up to DATABASE_POOL_TIMEOUT_SECONDS for a connection instead.
DEFAULT_POOL_SIZE = 16
DEFAULT_MAX_OVERFLOW = 0
DEFAULT_PING_AFTER_IDLE_SECONDS = 10.0
STORAGE_BACKENDS = ("filesystem", "s3")


def _env(*names: str, default: str = "") -> str:
    """The first of `names` that is set and not blank (so S3_BUCKET wins over the Bucketeer
    add-on's BUCKETEER_BUCKET_NAME)."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return default


def _storage_config() -> dict:
    """Where uploads and results go: the local folder, or an S3-compatible bucket.

    STORAGE_BACKEND defaults to `s3` when a bucket is named (S3_BUCKET, or the Bucketeer
    add-on's BUCKETEER_BUCKET_NAME), else `filesystem`. Reads only the environment.
    """
    bucket = _env("S3_BUCKET", "BUCKETEER_BUCKET_NAME")
    return {
        "STORAGE_BACKEND": _env(
            "STORAGE_BACKEND", default="s3" if bucket else "filesystem"
        ).lower(),
        "GENERATION_STORAGE_PATH": Path(
            os.environ.get("GENERATION_STORAGE_PATH", instance_path() / "generations")
        ).resolve(),
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": _env("S3_ENDPOINT_URL"),
        "S3_REGION": _env(
            "S3_REGION",
            "BUCKETEER_AWS_REGION",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            default="us-east-1",
        ),
        "S3_ACCESS_KEY_ID": _env(
            "S3_ACCESS_KEY_ID", "BUCKETEER_AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"
        ),
        "S3_SECRET_ACCESS_KEY": _env(
            "S3_SECRET_ACCESS_KEY", "BUCKETEER_AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"
        ),
        "S3_KEY_PREFIX": _env("S3_KEY_PREFIX", default="generations"),
        "S3_ADDRESSING_STYLE": _env("S3_ADDRESSING_STYLE", default="auto").lower(),
        "S3_CA_BUNDLE": _env("S3_CA_BUNDLE", "AWS_CA_BUNDLE"),
    }


def _check_storage(config: dict) -> None:
    """Raises ConfigError for an unknown backend, S3 without a bucket, or the local disk on a
    Heroku dyno (web and worker dynos share no disk, so every generation would fail)."""
    backend = config["STORAGE_BACKEND"]
    if backend not in STORAGE_BACKENDS:
        raise ConfigError(f"STORAGE_BACKEND must be filesystem or s3, got {backend!r}")
    if backend == "s3" and not config["S3_BUCKET"]:
        raise ConfigError("STORAGE_BACKEND=s3 needs S3_BUCKET (or BUCKETEER_BUCKET_NAME)")
    if config["S3_ADDRESSING_STYLE"] not in ("auto", "path", "virtual"):
        raise ConfigError("S3_ADDRESSING_STYLE must be auto, path or virtual")
    if (
        backend == "filesystem"
        and "DYNO" in os.environ
        and config["APP_ENV"] == "production"
        and not _flag("ALLOW_EMBEDDED_SERVICES")
    ):
        raise ConfigError(
            "uploads need shared storage on a dyno: set S3_BUCKET and its keys "
            "(or add a Bucketeer-style add-on), or ALLOW_EMBEDDED_SERVICES=1 "
            "for a single-dyno demo"
        )


def load_config(env: str | None = None, overrides: dict | None = None) -> dict:
    """Build the Flask config mapping for APP_ENV (development, testing or production).

    Reads and checks the environment, nothing else: it starts no server and writes no file.
    What a development machine must provision for itself is named instead: EMBEDDED_SERVICES
    lists the embedded servers to start for the URLs that are unset (their URLs and the
    settings derived from them are then absent), SECRET_KEY and CREEM_WEBHOOK_SECRET are None
    where the dev secrets under INSTANCE_PATH stand in. create_app's provision_local_services
    step fills them in. Raises ConfigError for a setting the app cannot run with.
    """
    if env is None and "APP_ENV" not in os.environ and "DYNO" in os.environ:
        raise ConfigError("APP_ENV must be set on a deployed dyno (production, usually)")
    env = env or os.environ.get("APP_ENV", "development")
    if env not in {"development", "testing", "production"}:
        raise ConfigError(f"APP_ENV must be development, testing or production, got {env!r}")
    database_url, redis_url = _service_urls(env)
    embedded = _embedded_services(env, database_url, redis_url)
    production = env == "production"
    redis_tls = _redis_tls_config()
    config = {
        "APP_ENV": env,
        "INSTANCE_PATH": instance_path(),
        "MIGRATIONS_DIR": PROJECT_ROOT / "migrations",
        "TESTING": env == "testing",
        "SECRET_KEY": _secret_key(env),
        **service_settings(
            database_url or None,
            redis_url or None,
            ssl_cert_reqs=redis_tls["REDIS_SSL_CERT_REQS"],
            ssl_ca_certs=redis_tls["REDIS_SSL_CA_CERTS"],
        ),
        "EMBEDDED_SERVICES": embedded,
        "SQLALCHEMY_ENGINE_OPTIONS": {
            "pool_size": _int("DATABASE_POOL_SIZE", DEFAULT_POOL_SIZE),
            "max_overflow": _int("DATABASE_MAX_OVERFLOW", DEFAULT_MAX_OVERFLOW),
            # Shed load instead of queueing: a request that finds every pooled connection busy
            # for this long gets 503 + Retry-After (web/responses.py), never a 30 s wait.
            "pool_timeout": _float("DATABASE_POOL_TIMEOUT_SECONDS", 1.0),
            # A database that does not answer a connect fails the request in this time.
            "connect_args": {"connect_timeout": _int("DATABASE_CONNECT_TIMEOUT_SECONDS", 3)},
        },
        # platform/database.py: a pooled connection idle this long is pinged before reuse.
        "DATABASE_PING_AFTER_IDLE_SECONDS": _float(
            "DATABASE_PING_AFTER_IDLE_SECONDS", DEFAULT_PING_AFTER_IDLE_SECONDS
        ),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "PREFERRED_URL_SCHEME": "https" if production else "http",
        "WTF_CSRF_ENABLED": True,
        "WTF_CSRF_TIME_LIMIT": None,
        **redis_tls,
        "TRUSTED_PROXY_HOPS": _int("TRUSTED_PROXY_HOPS", 0),
        "FORCE_HTTPS": _flag("FORCE_HTTPS", production),
        "HSTS_MAX_AGE_SECONDS": _int("HSTS_MAX_AGE_SECONDS", 31_536_000),
        "RATELIMIT_GENERATE": os.environ.get("RATELIMIT_GENERATE", "30 per minute"),
        "RATELIMIT_KEY_PREFIX": os.environ.get("RATELIMIT_KEY_PREFIX", "credit_app"),
        "RATELIMIT_API": os.environ.get("RATELIMIT_API", "120 per minute"),
        "RATELIMIT_CONSUME": os.environ.get("RATELIMIT_CONSUME", "60 per minute"),
        "RATELIMIT_AUTH": os.environ.get("RATELIMIT_AUTH", "10 per minute"),
        "RESERVATION_TIMEOUT_SECONDS": _int("RESERVATION_TIMEOUT_SECONDS", 600),
        "GENERATION_PROVIDER": os.environ.get("GENERATION_PROVIDER", "local"),
        **_storage_config(),
        "GENERATION_JOB_TIMEOUT_SECONDS": _int("GENERATION_JOB_TIMEOUT_SECONDS", 300),
        "MAX_CONTENT_LENGTH": MAX_REQUEST_BYTES,
        "SOCK_SERVER_OPTIONS": {
            "ping_interval": _int("WEBSOCKET_PING_SECONDS", 25),
            "max_message_size": 4096,
        },
        **{
            key: value
            for key, value in os.environ.items()
            if key.startswith("MODEL_API_") or key.startswith("MODEL_VERSION_")
        },
        "SWEEP_INTERVAL_SECONDS": _int("SWEEP_INTERVAL_SECONDS", 60),
        "SIGNUP_CREDITS": _int("SIGNUP_CREDITS", 6),
        "MIN_PASSWORD_LENGTH": _int("MIN_PASSWORD_LENGTH", DEFAULT_MIN_PASSWORD_LENGTH),
        **_creem_config(env),
        **_credits_config(),
        **_accounts_config(env),
        **_operations_config(env),
        **_fair_use_and_reconciliation_config(),
    }
    if overrides:
        config.update(overrides)
    config["EMBEDDED_SERVICES"] = tuple(
        name for name in embedded if config.get(EMBEDDED_SERVERS[name][1]) is None
    )
    _check_work_settings(config)
    _check_storage(config)
    return config


MAIL_STAND_IN_URL = "smtp://127.0.0.1:1025"


def _accounts_config(env: str) -> dict:
    """Mail (SMTP from MAIL_URL, else the local stand-in), the account rate limits, admin
    two-factor.

    Raises ConfigError when production has no MAIL_URL (unless ALLOW_EMBEDDED_SERVICES), or
    MAIL_URL is not an smtp:// or smtps:// URL.
    """
    mail_url = os.environ.get("MAIL_URL", "").strip()
    if not mail_url and env == "production" and not _flag("ALLOW_EMBEDDED_SERVICES"):
        raise ConfigError(
            "MAIL_URL must be set in production (smtp://user:password@host:587 "
            "or smtps://…), or set ALLOW_EMBEDDED_SERVICES=1 to use the stand-in"
        )
    if mail_url and not mail_url.startswith(("smtp://", "smtps://")):
        raise ConfigError("MAIL_URL must start with smtp:// (STARTTLS) or smtps:// (TLS)")
    return {
        "MAIL_URL": mail_url or MAIL_STAND_IN_URL,
        "MAIL_STAND_IN": not mail_url,
        "MAIL_FROM": os.environ.get("MAIL_FROM", "Roomcraft <no-reply@roomcraft.localhost>"),
        "MAIL_TIMEOUT_SECONDS": _int("MAIL_TIMEOUT_SECONDS", 10),
        "PUBLIC_URL": os.environ.get("PUBLIC_URL", "").strip().rstrip("/"),
        "PASSWORD_RESET_MAX_AGE_SECONDS": _int("PASSWORD_RESET_MAX_AGE_SECONDS", 3600),
        "EMAIL_VERIFICATION_MAX_AGE_SECONDS": _int(
            "EMAIL_VERIFICATION_MAX_AGE_SECONDS", 3 * 24 * 3600
        ),
        "RATELIMIT_SIGNUP": os.environ.get("RATELIMIT_SIGNUP", "5 per hour"),
        "RATELIMIT_RESET_ADDRESS": os.environ.get("RATELIMIT_RESET_ADDRESS", "3 per hour"),
        "RATELIMIT_RESET_CLIENT": os.environ.get("RATELIMIT_RESET_CLIENT", "10 per hour"),
        "RATELIMIT_VERIFY_RESEND": os.environ.get("RATELIMIT_VERIFY_RESEND", "3 per 10 minutes"),
        "ADMIN_TWO_FACTOR_REQUIRED": env == "production" or _flag("ADMIN_TWO_FACTOR_REQUIRED"),
    }


def _operations_config(env: str) -> dict:
    """Analytics rollups and retention, the rollout cache, health, metrics and logging.

    Raises ConfigError for a retention under 2 days or a LOG_FORMAT other than json or text.
    """
    retention = _int("ANALYTICS_RETENTION_DAYS", 90)
    if retention < 2:
        raise ConfigError("ANALYTICS_RETENTION_DAYS must be at least 2")
    log_format = os.environ.get("LOG_FORMAT", "json" if env == "production" else "text")
    if log_format.strip().lower() not in {"json", "text"}:
        raise ConfigError(f"LOG_FORMAT must be json or text, got {log_format!r}")
    return {
        "ANALYTICS_RETENTION_DAYS": retention,
        "ANALYTICS_ROLLUP_INTERVAL_SECONDS": _int("ANALYTICS_ROLLUP_INTERVAL_SECONDS", 60),
        "ROLLOUT_CACHE_SECONDS": _int("ROLLOUT_CACHE_SECONDS", 0 if env == "testing" else 5),
        "WORKER_HEARTBEAT_INTERVAL_SECONDS": _int("WORKER_HEARTBEAT_INTERVAL_SECONDS", 30),
        "WORKER_HEARTBEAT_MAX_AGE_SECONDS": _int("WORKER_HEARTBEAT_MAX_AGE_SECONDS", 90),
        "METRICS_TOKEN": os.environ.get("METRICS_TOKEN", "").strip(),
        "LOG_FORMAT": log_format.strip().lower(),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO").strip().upper(),
    }


def _fair_use_and_reconciliation_config() -> dict:
    """Fair use for Pro (generations a day before the lower-priority queue), the Creem
    reconciliation's period, and the export batch size."""
    return {
        "PRO_FAIR_USE_DAILY_GENERATIONS": _int("PRO_FAIR_USE_DAILY_GENERATIONS", 100),
        "FAIR_USE_RESERVATION_TIMEOUT_SECONDS": _int(
            "FAIR_USE_RESERVATION_TIMEOUT_SECONDS", 3 * 3600
        ),
        "CREEM_RECONCILE_INTERVAL_SECONDS": _int("CREEM_RECONCILE_INTERVAL_SECONDS", 6 * 3600),
        "EXPORT_BATCH_ROWS": _int("EXPORT_BATCH_ROWS", 1000),
    }


def _redis_tls_config() -> dict:
    """TLS settings of every Redis client, and how flask-limiter (the pages' limits) treats its
    storage, whose URI and options follow from REDIS_URL (service_settings).

    flask-limiter fails open to per-process limits: its storage has the app's Redis budget, so
    a hung or down Redis costs one check one timeout; then each process counts the same
    limits in memory (a client gets at most one limit per web process) and probes Redis again
    with backoff. Credits never depend on it: the ledger in PostgreSQL is the guard against
    double spending, the limiter only against abuse, and a Redis outage must not take the
    site down with it.

    Raises ConfigError for a REDIS_SSL_CERT_REQS other than none, optional or required.
    """
    from credit_app.platform.redis_client import SSL_CERT_REQS

    cert_reqs = os.environ.get("REDIS_SSL_CERT_REQS", "none").strip().lower()
    if cert_reqs not in SSL_CERT_REQS:
        raise ConfigError(
            f"REDIS_SSL_CERT_REQS must be one of {', '.join(SSL_CERT_REQS)}, got {cert_reqs!r}"
        )
    ca_certs = os.environ.get("REDIS_SSL_CA_CERTS", "").strip() or None
    return {
        "REDIS_SSL_CERT_REQS": cert_reqs,
        "REDIS_SSL_CA_CERTS": ca_certs,
        # X-RateLimit-* headers cost two more Redis round trips per request (the window's
        # stats), so they are off unless asked for; a 429 always carries Retry-After.
        "RATELIMIT_HEADERS_ENABLED": _flag("RATELIMIT_HEADERS_ENABLED"),
        "RATELIMIT_SWALLOW_ERRORS": True,
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
    }


def _limits_storage_uri(redis_url: str) -> str:
    """flask-limiter names a Unix-socket Redis `redis+unix://`."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://") :]
    return redis_url
