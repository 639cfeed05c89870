"""The Creem stand-in served over HTTP: Creem's REST API, the hosted checkout page, the
billing portal and a control page (Jinja templates in `templates/`).

The API (`x-api-key` header): `POST /v1/checkouts`, `GET /v1/subscriptions?subscription_id=`,
`POST /v1/subscriptions/<id>/cancel` (`{"mode": "scheduled" | "immediate"}`),
`POST /v1/subscriptions/<id>/resume`, `POST /v1/subscriptions/<id>/upgrade`
(`{"product_id", "update_behavior"}`) and `POST /v1/customers/billing` answer like Creem does.
The control page at `/` drives a subscription's life, sends Creem's documented samples, and
holds events back to release them in order, reversed or shuffled.

Run it on its own with `python -m credit_app.testing.creem --port 5056`.
"""

from __future__ import annotations

import argparse
import hmac
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, jsonify, redirect, render_template, request
from werkzeug.serving import make_server

from credit_app.billing.creem.events import CANCEL_MODES, EVENT_TYPES
from credit_app.platform.config import CREEM_STAND_IN_API_KEY
from credit_app.testing import serve_in_thread, serve_until_interrupted
from credit_app.testing.creem.state import (
    SUBSCRIPTION_ACTIONS,
    WEBHOOK_PATH,
    CreemStandIn,
    StandInError,
    StandInProduct,
    iso,
)

TEMPLATES = Path(__file__).with_name("templates")


def create_stand_in_app(stand_in: CreemStandIn | None = None, **options: Any) -> Flask:
    """A Flask app serving `stand_in` (or a new CreemStandIn built with `options`).

    Its CreemStandIn is `get_stand_in(app)`.
    """
    app = Flask(__name__, template_folder=str(TEMPLATES))
    app.jinja_env.globals.update(money=_money, iso=iso)
    app.extensions["creem_stand_in"] = stand_in or CreemStandIn(**options)
    app.add_url_rule("/v1/checkouts", view_func=_api_create_checkout, methods=["POST"])
    app.add_url_rule("/v1/subscriptions", view_func=_api_get_subscription)
    app.add_url_rule(
        "/v1/subscriptions/<subscription_id>/cancel",
        view_func=_api_cancel_subscription,
        methods=["POST"],
    )
    app.add_url_rule(
        "/v1/subscriptions/<subscription_id>/resume",
        view_func=_api_resume_subscription,
        methods=["POST"],
    )
    app.add_url_rule(
        "/v1/subscriptions/<subscription_id>/upgrade",
        view_func=_api_upgrade_subscription,
        methods=["POST"],
    )
    app.add_url_rule("/v1/customers/billing", view_func=_api_customer_portal, methods=["POST"])
    app.add_url_rule(
        "/v1/customers/<customer_id>/subscriptions", view_func=_api_list_customer_subscriptions
    )
    app.add_url_rule("/checkout/<checkout_id>", view_func=_checkout_page)
    app.add_url_rule("/checkout/<checkout_id>/pay", view_func=_checkout_pay, methods=["POST"])
    app.add_url_rule("/checkout/<checkout_id>/cancel", view_func=_checkout_cancel, methods=["POST"])
    app.add_url_rule("/portal/<customer_id>", view_func=_portal_page)
    app.add_url_rule("/", view_func=_control_page)
    app.add_url_rule(
        "/stand-in/subscriptions/<subscription_id>/<action>",
        view_func=_control_act,
        methods=["POST"],
    )
    app.add_url_rule(
        "/stand-in/orders/<order_id>/refund", view_func=_control_refund_order, methods=["POST"]
    )
    app.add_url_rule(
        "/stand-in/events/<event_id>/redeliver", view_func=_control_redeliver, methods=["POST"]
    )
    app.add_url_rule(
        "/stand-in/subscriptions/<subscription_id>/samples/<event_type>",
        view_func=_control_send_sample,
        methods=["POST"],
    )
    app.add_url_rule("/stand-in/hold", view_func=_control_hold, methods=["POST"])
    app.add_url_rule("/stand-in/release", view_func=_control_release, methods=["POST"])
    app.add_url_rule("/stand-in/events", view_func=_control_events)
    app.register_error_handler(StandInError, _stand_in_error)
    app.before_request(_count_and_fail)
    return app


def get_stand_in(app: Flask) -> CreemStandIn:
    """The CreemStandIn of an app made by create_stand_in_app. Raises KeyError for others."""
    return app.extensions["creem_stand_in"]


@contextmanager
def serve_stand_in(
    app: Flask | None = None, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> Iterator[str]:
    """Serve `app` (or a new stand-in built with `options`) on `port` (0: a free one) in a
    thread; any Flask app can be served (tests serve their webhook receivers with it).

    Yields the base URL, e.g. `http://127.0.0.1:54321`; stops the server on exit.
    """
    app = app or create_stand_in_app(**options)
    try:
        with serve_in_thread(app, host, "creem-stand-in", port) as url:
            yield url
    finally:
        if "creem_stand_in" in app.extensions:
            get_stand_in(app).close()


def run_stand_in(host: str = "127.0.0.1", port: int = 5056, **options: Any) -> None:
    """Serve a stand-in built with `options` in the foreground until interrupted."""
    app = create_stand_in_app(**options)
    server = make_server(host, port, app, threaded=True)
    print(
        f"Creem stand-in on http://{host}:{server.server_port} (control page at /); "
        f"the app finds it with CREEM_API_URL=http://{host}:{server.server_port}",
        flush=True,
    )
    with closing(get_stand_in(app)):
        serve_until_interrupted(server)


def _stand_in() -> CreemStandIn:
    return get_stand_in(current_app)


def _stand_in_error(error: StandInError) -> tuple[Response, int]:
    return jsonify(
        {
            "status": error.status,
            "error": "Bad Request" if error.status == 400 else "Error",
            "message": [error.message],
        }
    ), error.status


def _count_and_fail() -> tuple[Response, int] | None:
    """Record API calls; answer the next `fail_next_requests` of them 503 (for retry tests)."""
    if not request.path.startswith("/v1/"):
        return None
    stand_in = _stand_in()
    with stand_in.lock:
        failing = stand_in.fail_next_requests > 0
        if failing:
            stand_in.fail_next_requests -= 1
        stand_in.requests.append((request.method, request.path, 503 if failing else 0))
    if failing:
        return jsonify({"status": 503, "error": "Service Unavailable"}), 503
    if not request.headers.get("x-api-key"):
        return jsonify(
            {"status": 401, "error": "Unauthorized", "message": ["The API key is missing."]}
        ), 401
    if not hmac.compare_digest(request.headers["x-api-key"], stand_in.api_key):
        return jsonify(
            {"status": 403, "error": "Forbidden", "message": ["The API key is not valid."]}
        ), 403
    return None


def _api_create_checkout() -> tuple[Response, int]:
    checkout = _stand_in().create_checkout(request.get_json(silent=True))
    return jsonify(
        {
            "id": checkout.id,
            "object": "checkout",
            "product": checkout.product_id,
            "status": checkout.status,
            "request_id": checkout.request_id,
            "success_url": checkout.success_url,
            "metadata": checkout.metadata,
            "mode": "test",
            "checkout_url": request.host_url + f"checkout/{checkout.id}",
        }
    ), 200


def _api_get_subscription() -> Response:
    stand_in = _stand_in()
    subscription = stand_in.subscription(request.args.get("subscription_id", ""))
    with stand_in.lock:
        return jsonify(stand_in.subscription_object(subscription))


def _page_argument(name: str, default: int, largest: int) -> int:
    value = request.args.get(name, str(default))
    if not value.isdigit() or not 1 <= int(value) <= largest:
        raise StandInError(400, f"{name} must be a whole number from 1 to {largest}.")
    return int(value)


def _api_list_customer_subscriptions(customer_id: str) -> Response:
    """A customer's subscriptions, oldest first, paged like Creem's list endpoints."""
    stand_in = _stand_in()
    page = _page_argument("page_number", 1, 10_000)
    size = _page_argument("page_size", 10, 100)
    with stand_in.lock:
        if customer_id not in stand_in.customers.values():
            raise StandInError(404, f"Customer {customer_id} not found.")
        mine = sorted(
            (sub for sub in stand_in.subscriptions.values() if sub.customer_id == customer_id),
            key=lambda sub: sub.created_at,
        )
        pages = max(1, -(-len(mine) // size))
        items = [stand_in.subscription_object(sub) for sub in mine[(page - 1) * size : page * size]]
    return jsonify(
        {
            "items": items,
            "pagination": {
                "total_records": len(mine),
                "total_pages": pages,
                "current_page": page,
                "next_page": page + 1 if page < pages else None,
                "prev_page": page - 1 if page > 1 else None,
            },
        }
    )


def _api_cancel_subscription(subscription_id: str) -> Response:
    body = request.get_json(silent=True) or {}
    mode = body.get("mode", "immediate") if isinstance(body, dict) else None
    if mode not in CANCEL_MODES:
        raise StandInError(400, "mode must be scheduled or immediate.")
    stand_in = _stand_in()
    subscription = stand_in.act(subscription_id, f"cancel-{mode}")
    with stand_in.lock:
        return jsonify(stand_in.subscription_object(subscription))


def _api_resume_subscription(subscription_id: str) -> Response:
    stand_in = _stand_in()
    subscription = stand_in.act(subscription_id, "resume")
    with stand_in.lock:
        return jsonify(stand_in.subscription_object(subscription))


def _api_upgrade_subscription(subscription_id: str) -> Response:
    stand_in = _stand_in()
    subscription = stand_in.upgrade(subscription_id, request.get_json(silent=True))
    with stand_in.lock:
        return jsonify(stand_in.subscription_object(subscription))


def _api_customer_portal() -> Response:
    body = request.get_json(silent=True)
    customer_id = body.get("customer_id") if isinstance(body, dict) else None
    if customer_id not in _stand_in().customers.values():
        raise StandInError(404, f"Customer {customer_id!r} not found.")
    return jsonify({"customer_portal_link": request.host_url + f"portal/{customer_id}"})


def _money(product: StandInProduct) -> str:
    if product.one_time:
        return f"{product.price / 100:.2f} {product.currency}, once"
    period = "year" if product.billing_period == "every-year" else "month"
    return f"{product.price / 100:.2f} {product.currency} / {period}"


def _checkout_page(checkout_id: str) -> tuple[str, int]:
    stand_in = _stand_in()
    with stand_in.lock:
        checkout = stand_in._checkout(checkout_id)
        product = stand_in.products[checkout.product_id]
        if checkout.status != "pending":
            return render_template("closed.html", checkout=checkout), 409
        return render_template("checkout.html", checkout=checkout, product=product), 200


def _checkout_pay(checkout_id: str) -> Response:
    return redirect(_stand_in().pay(checkout_id, request.form.get("email")), code=303)


def _checkout_cancel(checkout_id: str) -> Response:
    return redirect(_stand_in().cancel_checkout(checkout_id), code=303)


def _portal_page(customer_id: str) -> str:
    stand_in = _stand_in()
    with stand_in.lock:
        mine = [sub for sub in stand_in.subscriptions.values() if sub.customer_id == customer_id]
        if not mine:
            raise StandInError(404, f"Customer {customer_id} not found.")
        return render_template(
            "portal.html",
            subscriptions=mine,
            actions=("cancel-scheduled", "resume"),
            back=mine[0].app_origin + "/dashboard/subscription",
        )


def _control_page() -> str:
    stand_in = _stand_in()
    with stand_in.lock:
        return render_template(
            "control.html",
            subscriptions=list(stand_in.subscriptions.values()),
            orders=list(stand_in.orders.values()),
            actions=SUBSCRIPTION_ACTIONS,
            samples=EVENT_TYPES,
            events=list(reversed(stand_in.events[-50:])),
            holding=stand_in.holding,
        )


def _control_send_sample(subscription_id: str, event_type: str) -> Response:
    event = _stand_in().send_sample(event_type, subscription_id)
    if _wants_html():
        return redirect("/", code=303)
    return jsonify({"id": event.id, "type": event.event_type})


def _wants_html() -> bool:
    return request.accept_mimetypes.best == "text/html"


def _control_act(subscription_id: str, action: str) -> Response:
    stand_in = _stand_in()
    subscription = stand_in.act(subscription_id, action)
    if _wants_html():
        return redirect("/", code=303)
    with stand_in.lock:
        return jsonify(stand_in.subscription_object(subscription))


def _control_refund_order(order_id: str) -> Response:
    amount = request.args.get("amount")
    if amount is not None and not amount.isdigit():
        raise StandInError(400, "amount must be a whole number of cents.")
    event = _stand_in().refund_order(order_id, int(amount) if amount else None)
    if _wants_html():
        return redirect("/", code=303)
    return jsonify({"id": event.id, "type": event.event_type})


def _control_redeliver(event_id: str) -> Response:
    times = request.args.get("times", "1")
    if not times.isdigit() or not 1 <= int(times) <= 100:
        raise StandInError(400, "times must be between 1 and 100.")
    event = _stand_in().redeliver(event_id, int(times))
    if _wants_html():
        return redirect("/", code=303)
    return jsonify({"id": event.id, "times": int(times)})


def _control_hold() -> Response:
    _stand_in().hold()
    return redirect("/", code=303) if _wants_html() else jsonify({"holding": True})


def _control_release() -> Response:
    seed = request.args.get("seed")
    events = _stand_in().release(
        request.args.get("order", "in_order"), int(seed) if seed and seed.isdigit() else None
    )
    if _wants_html():
        return redirect("/", code=303)
    return jsonify({"released": [event.id for event in events]})


def _control_events() -> Response:
    stand_in = _stand_in()
    with stand_in.lock:
        return jsonify(
            [
                {
                    "id": event.id,
                    "type": event.event_type,
                    "created_at": event.created_at,
                    "statuses": event.statuses,
                }
                for event in stand_in.events
            ]
        )


def main(argv: list[str] | None = None) -> None:
    """`python -m credit_app.testing.creem`: serve the stand-in in the foreground."""
    from credit_app.platform.config import instance_path
    from credit_app.platform.local_services import creem_dev_webhook_secret

    parser = argparse.ArgumentParser(description="Serve the Creem stand-in.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5056)
    parser.add_argument("--api-key", default=CREEM_STAND_IN_API_KEY)
    parser.add_argument(
        "--webhook-secret",
        default=None,
        help="default: the app's dev secret in instance/dev-creem-webhook-secret",
    )
    parser.add_argument(
        "--webhook-url",
        default=None,
        help=f"default: {WEBHOOK_PATH} on each checkout's success_url origin",
    )
    parser.add_argument(
        "--delivery-delay",
        type=float,
        default=1.0,
        help="seconds between a change and its webhook (default 1)",
    )
    args = parser.parse_args(argv)
    run_stand_in(
        args.host,
        args.port,
        api_key=args.api_key,
        webhook_secret=args.webhook_secret or creem_dev_webhook_secret(instance_path()),
        webhook_url=args.webhook_url,
        delivery_delay=args.delivery_delay,
    )
