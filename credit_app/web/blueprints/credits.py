"""The credit API of spec task 1.2.2: /api/user/credits and its history, consume and grant."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from credit_app.platform.database import fixed_transaction, keep_connection_for_request
from credit_app.platform.extensions import csrf, db
from credit_app.services import credits
from credit_app.web import schemas
from credit_app.web.api_limits import also_limited_by, check_api_limits
from credit_app.web.auth import api_admin, api_caller, identify_api_caller, require_api_csrf
from credit_app.web.credit_metrics import credit_operation
from credit_app.web.openapi import documented

bp = Blueprint("credits", __name__, url_prefix="/api/user/credits")
csrf.exempt(bp)
bp.before_request(keep_connection_for_request)
bp.before_request(identify_api_caller)
bp.before_request(check_api_limits)


# Set on the answer to a consume whose generation_id was already paid for: the body is the
# first outcome, repeated (as Stripe's Idempotent-Replayed).
REPLAYED_HEADER = "Idempotent-Replayed"


@bp.before_request
def check_csrf() -> None:
    require_api_csrf()


@bp.get("")
@credit_operation("balance")
@documented(summary="Get the current credit status", response=schemas.CreditsResponse)
def get_credits() -> Response:
    status = credits.credits_of(api_caller())
    return jsonify(
        remaining=status.remaining,
        total=status.total,
        subscription_status=status.subscription_status,
        last_updated=status.last_updated.isoformat(),
    )


@bp.post("/consume")
@credit_operation("consume")
@also_limited_by("RATELIMIT_CONSUME")
@documented(
    summary="Consume a credit for a generation",
    description="Spends the feature's cost (nothing for Pro, though the use is recorded). "
    "Send a generation_id to make retries safe: the same id is charged once.",
    request=schemas.ConsumeRequest,
    response=schemas.ConsumeResponse,
    errors={
        402: ("Out of credits; upgrade_url leads to the plans", schemas.InsufficientCreditsError),
        409: "The generation_id was already used for another feature or a reservation",
    },
)
def consume() -> Response:
    caller = api_caller()
    body = schemas.parse_body(schemas.ConsumeRequest)
    with fixed_transaction():
        result = credits.consume_credit(caller.id, body.feature, body.generation_id)
    response = jsonify(
        success=result.success, remaining_credits=result.remaining_credits, message=result.message
    )
    if result.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response


@bp.get("/history")
@documented(
    summary="List credit history, newest first",
    description="Cursor pagination: pass next_cursor back as cursor for the next page.",
    query=schemas.HistoryQuery,
    response=schemas.HistoryResponse,
)
def history() -> Response:
    caller = api_caller()
    query = schemas.parse(schemas.HistoryQuery, request.args.to_dict())
    page = credits.get_credit_history(caller.id, query.cursor, query.limit)
    return jsonify(items=[entry.to_dict() for entry in page.items], next_cursor=page.next_cursor)


@bp.post("/grant")
@credit_operation("grant")
@documented(
    summary="Grant credits to a user (admins only)",
    request=schemas.GrantRequest,
    response=schemas.GrantResponse,
    errors={403: "Not an admin, or the CSRF token is missing", 404: "No such user"},
    tag="admin",
)
def grant() -> Response:
    admin = api_admin()
    body = schemas.parse_body(schemas.GrantRequest)
    entry = credits.grant_credits(body.user_id, body.amount, body.reason, actor_id=admin.id)
    status = credits.get_user_credits(body.user_id)
    db.session.commit()
    return jsonify(
        success=True,
        user_id=body.user_id,
        remaining=status.remaining,
        total=status.total,
        transaction_id=entry.id,
    )
