"""Which requests the metrics count as credit operations (credit_app/platform/metrics.py).

Each view that checks, spends or changes credits declares its operation with
`@credit_operation("consume")` (credit_required declares "reserve" for the views it guards).
A before-request hook, registered right after the metrics' timer, marks the request with it
before any other hook or the view runs, so a request refused early (signed out, rate
limited, not staff) still counts, with the outcome its status tells. A view or decorator
that knows better marks the outcome itself (the htmx upgrade modal is a 200 that means
insufficient credits). Flask's automatic OPTIONS answers are not operations.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, current_app, request

from credit_app.platform import metrics

_OPERATION_ATTRIBUTE = "credit_operation"


def credit_operation(operation: str) -> Callable[[Callable], Callable]:
    """Declare that the view performs the credit operation `operation`
    (metrics.CREDIT_OPERATIONS). Raises ValueError for another name."""
    if operation not in metrics.CREDIT_OPERATIONS:
        raise ValueError(f"{operation!r} is not a credit operation")

    def decorator(view: Callable) -> Callable:
        setattr(view, _OPERATION_ATTRIBUTE, operation)
        return view

    return decorator


def declared_operation(view: Callable | None) -> str | None:
    """The credit operation `view` declared, if any."""
    return getattr(view, _OPERATION_ATTRIBUTE, None)


def mark_declared_operation() -> None:
    """Mark the request with its view's credit operation (a before-request hook)."""
    if request.method == "OPTIONS":
        return
    operation = declared_operation(current_app.view_functions.get(request.endpoint or ""))
    if operation is not None:
        metrics.mark_credit_operation(operation)


def init_request_metrics(app: Flask) -> None:
    """Count every request of `app`, and mark its credit operations."""
    metrics.init_request_metrics(app)
    app.before_request(mark_declared_operation)
