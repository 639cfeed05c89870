"""Creem's REST API over httpx: the app's only HTTP client for Creem (there is no official
Python SDK).

Every call sends the `x-api-key` header and has a timeout per attempt and a total budget (so a
web request never waits past its own timeout). Calls that are safe to repeat — GETs, and the
checkout creation, which carries a `request_id` — are retried on 429, 5xx and transport errors
with exponential backoff (honouring Retry-After); other calls are tried once, so a cancellation
or a plan change is never sent twice. Subscriptions come back as the same typed
`SubscriptionSnapshot` the webhook events become; every failure is a CreemError.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from credit_app.billing.creem.events import (
    CANCEL_MODES,
    UPDATE_BEHAVIORS,
    SubscriptionSnapshot,
    object_id,
    subscription_from_api,
)
from credit_app.errors import CreemError
from credit_app.platform.http_api import HttpApiClient, checked_base_url

log = logging.getLogger(__name__)

RETRYABLE_STATUS_CODES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_SECONDS = 10.0
# Creem's list endpoints page with `page_number` (from 1) and `page_size`; a run that meets
# more pages than this for one customer stops there (a loop guard, far above any real count).
MAX_LIST_PAGES = 100


@dataclass(frozen=True)
class Checkout:
    id: str
    checkout_url: str
    status: str
    product_id: str | None
    request_id: str | None


class CreemClient(HttpApiClient):
    """Talks to one Creem API base URL with one API key.

    Owns the httpx client it creates (close it with `close()` or use it as a context manager);
    an `http_client` passed in stays the caller's to close.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        total_timeout: float = 20.0,
        http_client: httpx.Client | None = None,
    ) -> None:
        """`timeout` bounds each attempt, `total_timeout` a call with all its retries.

        Raises ValueError for a malformed URL, an empty key or a non-positive timeout.
        """
        self.base_url = checked_base_url(base_url)
        if not api_key:
            raise ValueError("api_key must not be empty")
        if timeout <= 0 or total_timeout <= 0:
            raise ValueError("timeout and total_timeout must be positive")
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.total_timeout = float(total_timeout)
        self._api_key = api_key
        super().__init__(http_client, httpx.Timeout(timeout, connect=min(timeout, 5.0)))

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **options: Any) -> CreemClient:
        """Build from CREEM_API_URL, CREEM_API_KEY and CREEM_TIMEOUT_SECONDS."""
        return cls(
            config["CREEM_API_URL"],
            config["CREEM_API_KEY"],
            timeout=float(config.get("CREEM_TIMEOUT_SECONDS", 10)),
            **options,
        )

    def create_checkout(
        self,
        product_id: str,
        request_id: str,
        success_url: str,
        customer_email: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Checkout:
        """Open a hosted checkout for `product_id`; retried safely thanks to `request_id`.

        Raises CreemError.
        """
        body: dict[str, Any] = {
            "product_id": product_id,
            "request_id": request_id,
            "success_url": success_url,
            "metadata": dict(metadata or {}),
        }
        if customer_email:
            body["customer"] = {"email": customer_email}
        data = self._request("POST", "/v1/checkouts", json=body, retry=True)
        checkout_url = data.get("checkout_url")
        if not isinstance(data.get("id"), str) or not isinstance(checkout_url, str):
            raise CreemError("Creem did not return a checkout URL.")
        return Checkout(
            id=data["id"],
            checkout_url=checkout_url,
            status=str(data.get("status") or ""),
            product_id=object_id(data.get("product")),
            request_id=data.get("request_id"),
        )

    def get_subscription(self, subscription_id: str) -> SubscriptionSnapshot:
        """The subscription as Creem has it now. Raises CreemError."""
        data = self._request(
            "GET", "/v1/subscriptions", params={"subscription_id": subscription_id}, retry=True
        )
        return subscription_from_api(data)

    def list_customer_subscriptions(
        self, customer_id: str, page_size: int = 50
    ) -> Iterator[SubscriptionSnapshot]:
        """Every subscription of one customer, as Creem has them now, page by page
        (`GET /v1/customers/{id}/subscriptions`, answered as `{"items": [...],
        "pagination": {"next_page": ...}}`).

        Raises ValueError for a page_size outside 1..100, CreemError (404: Creem does not
        know the customer).
        """
        if not 1 <= page_size <= 100:
            raise ValueError(f"page_size must be from 1 to 100, got {page_size!r}")
        page: int | None = 1
        for _ in range(MAX_LIST_PAGES):
            data = self._request(
                "GET",
                f"/v1/customers/{customer_id}/subscriptions",
                params={"page_number": str(page), "page_size": str(page_size)},
                retry=True,
            )
            items = data.get("items")
            if not isinstance(items, list):
                raise CreemError("Creem answered a subscription list without its items.")
            for item in items:
                yield subscription_from_api(item)
            pagination = data.get("pagination")
            page = pagination.get("next_page") if isinstance(pagination, dict) else None
            if not isinstance(page, int) or isinstance(page, bool) or not items:
                return
        log.warning(
            "Creem customer %s has more than %d pages of subscriptions; read the first ones only",
            customer_id,
            MAX_LIST_PAGES,
        )

    def cancel_subscription(
        self, subscription_id: str, mode: str = "scheduled"
    ) -> SubscriptionSnapshot:
        """Cancel at the period end ("scheduled") or now ("immediate"); sent once.

        Raises ValueError for an unknown mode, CreemError.
        """
        if mode not in CANCEL_MODES:
            raise ValueError(f"mode must be one of {CANCEL_MODES}, got {mode!r}")
        data = self._request(
            "POST", f"/v1/subscriptions/{subscription_id}/cancel", json={"mode": mode}, retry=False
        )
        return subscription_from_api(data)

    def resume_subscription(self, subscription_id: str) -> SubscriptionSnapshot:
        """Resume a paused or scheduled-to-cancel subscription; sent once. Raises CreemError."""
        data = self._request(
            "POST", f"/v1/subscriptions/{subscription_id}/resume", json={}, retry=False
        )
        return subscription_from_api(data)

    def upgrade_subscription(
        self,
        subscription_id: str,
        product_id: str,
        update_behavior: str = "proration-charge-immediately",
    ) -> SubscriptionSnapshot:
        """Move the subscription to another product (`POST /v1/subscriptions/{id}/upgrade`,
        used for monthly <-> yearly); sent once.

        Raises ValueError for an unknown update_behavior, CreemError.
        """
        if update_behavior not in UPDATE_BEHAVIORS:
            raise ValueError(
                f"update_behavior must be one of {UPDATE_BEHAVIORS}, got {update_behavior!r}"
            )
        data = self._request(
            "POST",
            f"/v1/subscriptions/{subscription_id}/upgrade",
            json={"product_id": product_id, "update_behavior": update_behavior},
            retry=False,
        )
        return subscription_from_api(data)

    def customer_portal_url(self, customer_id: str) -> str:
        """A link to Creem's billing portal for the customer; sent once. Raises CreemError."""
        data = self._request(
            "POST", "/v1/customers/billing", json={"customer_id": customer_id}, retry=False
        )
        link = data.get("customer_portal_link")
        if not isinstance(link, str) or not link:
            raise CreemError("Creem did not return a billing portal link.")
        return link

    def _request(
        self,
        method: str,
        path: str,
        *,
        retry: bool,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        attempts = self.max_retries + 1 if retry else 1
        deadline = time.monotonic() + self.total_timeout
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                response = self._client.request(
                    method,
                    self.base_url + path,
                    json=json,
                    params=params,
                    headers={"x-api-key": self._api_key, "accept": "application/json"},
                    timeout=httpx.Timeout(
                        min(self.timeout, max(remaining, 0.1)),
                        connect=min(self.timeout, max(remaining, 0.1), 5.0),
                    ),
                )
            except httpx.TransportError as exc:
                log.warning(
                    "Creem %s %s failed (%s), attempt %d of %d",
                    method,
                    path,
                    type(exc).__name__,
                    attempt + 1,
                    attempts,
                )
                delay = self._retry_delay(attempt, attempts, None, deadline)
                if delay is None:
                    raise CreemError() from exc
            else:
                delay = None
                if response.status_code in RETRYABLE_STATUS_CODES:
                    delay = self._retry_delay(
                        attempt, attempts, response.headers.get("Retry-After"), deadline
                    )
                if delay is None:
                    return self._read(method, path, response)
                log.warning(
                    "Creem %s %s answered %d, attempt %d of %d",
                    method,
                    path,
                    response.status_code,
                    attempt + 1,
                    attempts,
                )
            time.sleep(delay)
            attempt += 1

    def _retry_delay(
        self, attempt: int, attempts: int, retry_after: str | None, deadline: float
    ) -> float | None:
        """How long to wait before the next attempt, or None when there is none to make."""
        if attempt + 1 >= attempts:
            return None
        delay = self.retry_backoff * 2**attempt
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER_SECONDS))
        if time.monotonic() + delay >= deadline:
            return None
        return delay

    @staticmethod
    def _read(method: str, path: str, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            log.warning(
                "Creem %s %s refused with %d: %s",
                method,
                path,
                response.status_code,
                response.text[:500],
            )
            if response.status_code in RETRYABLE_STATUS_CODES:
                raise CreemError(creem_status=response.status_code)
            raise CreemError(
                "The payment provider refused the request.", creem_status=response.status_code
            )
        try:
            data = response.json()
        except ValueError:
            raise CreemError("Creem answered with something that is not JSON.") from None
        if not isinstance(data, dict):
            raise CreemError("Creem answered with something that is not a JSON object.")
        return data
