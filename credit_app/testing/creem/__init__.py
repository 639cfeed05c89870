"""A local stand-in for Creem: its REST API, a hosted checkout page, and signed webhooks
shaped like Creem's documented samples (`state` is the state machine, `server` the HTTP
side with Jinja pages, `samples/` Creem's sample bodies)."""

from credit_app.testing.creem.server import (
    create_stand_in_app,
    get_stand_in,
    main,
    run_stand_in,
    serve_stand_in,
)
from credit_app.testing.creem.state import (
    DEFAULT_PRODUCTS,
    OTHER_PRODUCT_ID,
    RETRY_DELAYS,
    SUBSCRIPTION_ACTIONS,
    WEBHOOK_PATH,
    CreemStandIn,
    SentEvent,
    StandInError,
    StandInProduct,
    StoredCheckout,
    StoredOrder,
    StoredSubscription,
    encode,
    epoch_ms,
    event_envelope,
    iso,
    new_id,
    sample,
)

__all__ = [
    "DEFAULT_PRODUCTS",
    "OTHER_PRODUCT_ID",
    "RETRY_DELAYS",
    "SUBSCRIPTION_ACTIONS",
    "WEBHOOK_PATH",
    "CreemStandIn",
    "SentEvent",
    "StandInError",
    "StandInProduct",
    "StoredCheckout",
    "StoredOrder",
    "StoredSubscription",
    "create_stand_in_app",
    "encode",
    "epoch_ms",
    "event_envelope",
    "get_stand_in",
    "iso",
    "main",
    "new_id",
    "run_stand_in",
    "sample",
    "serve_stand_in",
]
