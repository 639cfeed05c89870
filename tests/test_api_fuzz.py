"""Schemathesis over the published /api/openapi.json, as a user and as an admin: no answer may be
a 5xx, and every answer must match the document (status code, content type, body schema).

Bounded: FUZZ_EXAMPLES examples (default 100) per operation, mode (valid and invalid data)
and role, derandomised, so a run takes a minute or two on two cores and finds the same
cases every time.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from credit_app.models import UserRole
from credit_app.platform.extensions import db
from credit_app.services import accounts

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def api_schema(app, monkeypatch):
    for limit in ("RATELIMIT_API", "RATELIMIT_CONSUME"):
        monkeypatch.setitem(app.config, limit, "1000000 per minute")
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


def operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


def test_the_document_lists_every_api_operation(api_schema):
    labels = {operation.label for operation in operations(api_schema)}
    assert labels == {
        "GET /api/user/credits",
        "POST /api/user/credits/consume",
        "GET /api/user/credits/history",
        "POST /api/user/credits/grant",
    }


@pytest.mark.parametrize("role", [UserRole.USER, UserRole.ADMIN])
@pytest.mark.parametrize(
    "mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
)
def test_the_api_answers_every_generated_request_as_documented(api_schema, make_user, role, mode):
    user = make_user(role=role)
    _, token = accounts.create_api_token(user.id, f"fuzz-{role.value}")
    db.session.commit()
    # identity: the bodies are checked against the document, and this WSGI client does not
    # undo the compression a real client asks for (tests/test_static_files.py tests that).
    headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}
    for operation in operations(api_schema):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        call()
