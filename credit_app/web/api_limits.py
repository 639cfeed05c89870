"""Rate limits of the JSON API, checked in one Redis round trip per request.

Every `/api` request spends from one budget per caller (`RATELIMIT_API`, shared by all API
routes); some routes add their own (`@also_limited_by("RATELIMIT_CONSUME")`). Each limit is a
fixed window, `limits`' syntax ("120 per minute", "10/second;100/minute"), keyed like
flask-limiter's (`user:<id>` of the API caller, or `ip:<address>` when anonymous) under
RATELIMIT_KEY_PREFIX.

Why not flask-limiter's decorators here: its per-request evaluation is about a quarter of
the CPU of a consume (bench/profile_request.py); the same windows in one Lua call cost a
tenth of that. flask-limiter still guards the pages (sign-in, generations).

When Redis fails, RATELIMIT_SWALLOW_ERRORS decides as it does for flask-limiter: on (the
default) the request goes through unlimited, and the process-wide Redis breaker
(after_commit.breaker) opens, so the requests of the next few seconds do not each wait out
Redis's timeout; off, the request gets 503.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from flask import current_app, g, request
from limits import RateLimitItem, parse_many

from credit_app.errors import RateLimited
from credit_app.platform.after_commit import breaker
from credit_app.platform.extensions import limiter
from credit_app.platform.redis_client import get_redis

API_LIMIT_SETTING = "RATELIMIT_API"
_EXTRA_LIMITS_ATTRIBUTE = "_api_extra_limit_settings"
# INCR each window's counter (starting its expiry on the first hit) and return the counts.
_HIT_WINDOWS = """
local counts = {}
for index, key in ipairs(KEYS) do
    local count = redis.call('INCR', key)
    if count == 1 then redis.call('EXPIRE', key, ARGV[index]) end
    counts[index] = count
end
return counts
"""


@dataclass(frozen=True)
class Window:
    """One limit's current window for one caller."""

    item: RateLimitItem
    key: str
    resets_at: float


@functools.lru_cache(maxsize=64)
def _parse(setting_value: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(setting_value))


API_BLUEPRINTS = frozenset({"credits", "api_docs"})


@limiter.request_filter
def is_api_request() -> bool:
    """flask-limiter's request filter: the API's limits are checked here, not there."""
    return request.blueprint in API_BLUEPRINTS


def also_limited_by(setting: str) -> Callable[[Callable], Callable]:
    """Give an API view a second budget, read from the app setting `setting`."""

    def decorator(view: Callable) -> Callable:
        setattr(
            view, _EXTRA_LIMITS_ATTRIBUTE, (*getattr(view, _EXTRA_LIMITS_ATTRIBUTE, ()), setting)
        )
        return view

    return decorator


def caller_key() -> str:
    """Whose budget a request spends: the API caller's (auth.identify_api_caller), keyed like
    flask-limiter's `user:<id>`, else the client address's."""
    caller = g.get("api_caller")
    if caller is not None:
        return f"user:{caller.id}"
    return f"ip:{request.remote_addr or 'unknown'}"


def _windows(now: float) -> list[Window]:
    app = current_app._get_current_object()
    config = app.config
    view = app.view_functions.get(request.endpoint or "")
    settings = (API_LIMIT_SETTING, *getattr(view, _EXTRA_LIMITS_ATTRIBUTE, ()))
    caller = caller_key()
    windows = []
    for setting in settings:
        for item in _parse(config[setting]):
            period = item.get_expiry()
            start = int(now // period) * period
            key = (
                f"{config['RATELIMIT_KEY_PREFIX']}:api:{setting}:{item.amount}/{period}:"
                f"{caller}:{start}"
            )
            windows.append(Window(item, key, start + period))
    return windows


def _hit(windows: list[Window]) -> list[int]:
    connection = get_redis()
    script = current_app.extensions.get("api_limits_script")
    if script is None:
        script = current_app.extensions["api_limits_script"] = connection.register_script(
            _HIT_WINDOWS
        )
    counts = script(
        keys=[window.key for window in windows],
        args=[window.item.get_expiry() + 1 for window in windows],
    )
    return [int(count) for count in counts]


def check_api_limits() -> None:
    """Spend one request from each of this request's API budgets (a `before_request` hook).

    Raises RateLimited (429, with the seconds until the fullest window resets) when any is
    spent, or lets the request through when Redis fails and errors are swallowed.
    """
    if not current_app.config.get("RATELIMIT_ENABLED", True):
        return
    swallow = current_app.config.get("RATELIMIT_SWALLOW_ERRORS", True)
    if swallow and breaker.is_open:
        return
    now = time.time()
    windows = _windows(now)
    try:
        counts = _hit(windows)
    except redis.RedisError as exc:
        if not swallow:
            raise
        breaker.trip("API rate limits", exc)
        return
    breached = [
        window for window, count in zip(windows, counts, strict=True) if count > window.item.amount
    ]
    if breached:
        worst = max(breached, key=lambda window: window.resets_at)
        raise RateLimited(
            f"Too many requests: {worst.item}.",
            retry_after=max(1, int(worst.resets_at - now + 0.999)),
        )
