"""What the clients of outside HTTP APIs (Creem, the model API) share: a checked base URL and
an httpx client that is either the caller's or their own to close."""

from __future__ import annotations

from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import httpx


def checked_base_url(base_url: str) -> str:
    """`base_url` without its trailing slash.

    Raises ValueError for anything but an http(s) URL with a host.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    return base_url.rstrip("/")


class HttpApiClient:
    """Talks through `http_client` when one is passed in (it stays the caller's to close), or
    through an httpx client of its own with `timeout`, which `close()` or leaving a `with`
    block closes. Redirects are never followed."""

    def __init__(self, http_client: httpx.Client | None, timeout: httpx.Timeout) -> None:
        self._owns_client = http_client is None
        self._client = http_client or httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
