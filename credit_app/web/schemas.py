"""Request and response schemas of the JSON API: they validate requests and write the OpenAPI."""

from __future__ import annotations

from typing import Annotated, Any

from flask import request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from credit_app.errors import BadJson, ValidationFailed
from credit_app.generation.features import FEATURE_KEYS
from credit_app.platform.input_text import PRINTABLE_PATTERN, clean_line
from credit_app.services.limits import (
    MAX_GENERATION_ID_LENGTH,
    MAX_GRANT,
    MAX_HISTORY_CURSOR_LENGTH,
    MAX_HISTORY_PAGE,
    MAX_ID,
    MAX_REASON_LENGTH,
)
from credit_app.web.request_json import MAX_JSON_DEPTH, json_depth


def _cleaned_line(value: Any) -> Any:
    return clean_line(value) if isinstance(value, str) else value


# Free text of one line, cleaned by the one rule of credit_app/platform/input_text.py before the
# length limits apply (so a reason of only control characters is empty, and refused).
CleanLine = Annotated[str, BeforeValidator(_cleaned_line)]


class Schema(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", regex_engine="python-re")


class FieldError(Schema):
    field: str = Field(examples=["amount"], description="Dotted path of the field, or body")
    message: str = Field(examples=["Input should be greater than or equal to 1"])


class ErrorDetail(Schema):
    code: str = Field(examples=["insufficient_credits"])
    message: str = Field(examples=["You have used all your credits."])
    field: str | None = Field(
        default=None, examples=["cursor"], description="The field at fault, when there is one"
    )
    fields: list[FieldError] | None = Field(
        default=None, description="Every field that failed validation (422 validation_error)"
    )


class ErrorResponse(Schema):
    model_config = ConfigDict(title="Error")
    error: ErrorDetail


class CreditsResponse(Schema):
    remaining: int = Field(examples=[3])
    total: int = Field(examples=[6])
    subscription_status: str = Field(examples=["free"])
    last_updated: str = Field(
        description="ISO 8601 time of the last change", examples=["2026-11-27T09:30:00+00:00"]
    )


FeatureName = Annotated[
    str, Field(json_schema_extra={"enum": list(FEATURE_KEYS)}, examples=["interior"])
]


class ConsumeRequest(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"feature": "interior", "generation_id": "gen_01JH2Y8Q3K"}]
        },
    )
    feature: FeatureName
    generation_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_GENERATION_ID_LENGTH,
        pattern=PRINTABLE_PATTERN,
        description="Idempotency key: the same id never spends twice. Printable characters "
        "only: no control characters, tabs, line breaks or line separators.",
    )


class ConsumeResponse(Schema):
    success: bool
    remaining_credits: int = Field(examples=[2])
    message: str = Field(examples=["Credit consumed."])


class InsufficientCreditsError(Schema):
    model_config = ConfigDict(title="InsufficientCreditsError")

    class Detail(Schema):
        code: str = Field(examples=["insufficient_credits"])
        message: str
        remaining: int = Field(examples=[0])
        upgrade_url: str = Field(examples=["/dashboard/subscription?feature=interior"])

    error: Detail


class LedgerEntry(Schema):
    id: int
    kind: str = Field(
        examples=["consume"],
        json_schema_extra={"enum": ["grant", "consume", "reserve", "release", "adjust", "expire"]},
    )
    feature_used: str = Field(examples=["interior"])
    amount: int = Field(description="Signed change of the balance", examples=[-1])
    credits_consumed: int = Field(examples=[1])
    balance_after: int = Field(examples=[5])
    generation_id: str | None
    created_at: str
    metadata: dict[str, Any]


class HistoryQuery(Schema):
    model_config = ConfigDict(strict=False, extra="forbid")
    cursor: str | None = Field(
        default=None,
        max_length=MAX_HISTORY_CURSOR_LENGTH,
        description="next_cursor of the previous page",
    )
    limit: int = Field(default=20, ge=1, le=MAX_HISTORY_PAGE)


class HistoryResponse(Schema):
    items: list[LedgerEntry]
    next_cursor: str | None


class GrantRequest(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"user_id": 42, "amount": 10, "reason": "Apology for an outage"}]
        },
    )
    user_id: int = Field(ge=1, le=MAX_ID)
    amount: int = Field(ge=1, le=MAX_GRANT)
    reason: CleanLine = Field(
        min_length=1,
        max_length=MAX_REASON_LENGTH,
        description="Shown in the user's history and the audit log; "
        "control characters are removed, then it is trimmed",
    )


class GrantResponse(Schema):
    success: bool
    user_id: int
    remaining: int
    total: int
    transaction_id: int


def parse(model: type[Schema], data: Any) -> Any:
    """Validate `data` against `model`. Raises ValidationFailed listing each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation_failed(exc) from None


# What pydantic reports for JSON of another type than an object at the top.
_NOT_AN_OBJECT = frozenset({"model_type", "model_attributes_type"})


def parse_body(model: type[Schema]) -> Any:
    """The request's JSON body, validated against `model` straight from its bytes
    (pydantic's parser: about a third of the Python calls of parsing to a dict first).

    Raises BadJson (400) for a body that is not a JSON object (another content type,
    malformed, nested deeper than MAX_JSON_DEPTH, or not an object at the top). Malformed
    includes a string escaping half a surrogate pair (`"\\ud800"`), which is no character:
    Python's own parser lets it through, to fail later. ValidationFailed (422) lists each bad
    field.
    """
    if not request.is_json:
        raise BadJson()
    raw = request.get_data(cache=True)
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise BadJson(f"The request body nests deeper than {MAX_JSON_DEPTH} levels.")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_context=False, include_input=False):
            if error["type"] == "json_invalid":
                detail = error["msg"].removeprefix("Invalid JSON: ")
                raise BadJson(f"The request body is not valid JSON: {detail}.") from None
            if error["type"] in _NOT_AN_OBJECT and not error["loc"]:
                raise BadJson() from None
        raise _validation_failed(exc) from None


def _validation_failed(exc: ValidationError) -> ValidationFailed:
    fields = [
        {"field": ".".join(str(part) for part in err["loc"]) or "body", "message": err["msg"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    summary = "; ".join(f"{item['field']}: {item['message']}" for item in fields)
    return ValidationFailed(f"Invalid request: {summary}", fields=fields)
