"""OpenAPI 3.1 built from the schemas the API validates with, and a Postman collection from it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from credit_app.web.schemas import ErrorResponse, Schema

STANDARD_ERRORS = {
    400: "The body is not a JSON object",
    401: "Not signed in and no valid API token",
    403: "Forbidden (CSRF token missing, or not allowed)",
    422: "The request failed validation",
    429: "Too many requests; see Retry-After",
    503: "The database or Redis is unavailable for a moment; retry after Retry-After seconds",
}


@dataclass
class ApiDoc:
    summary: str
    description: str = ""
    request: type[Schema] | None = None
    query: type[Schema] | None = None
    response: type[Schema] | None = None
    errors: dict[int, tuple[str, type[Schema]] | str] = field(default_factory=dict)
    tag: str = "credits"


def documented(**kwargs: Any) -> Callable[[Callable], Callable]:
    """Attach an ApiDoc to a view so the OpenAPI document describes it."""

    def decorator(view: Callable) -> Callable:
        view.api_doc = ApiDoc(**kwargs)
        return view

    return decorator


def _schema_ref(model: type[Schema], components: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    name = schema.get("title", model.__name__)
    components[name] = schema
    return {"$ref": f"#/components/schemas/{name}"}


def _query_parameters(model: type[Schema]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": prop.get("description", ""),
            "schema": {key: value for key, value in prop.items() if key != "description"},
        }
        for name, prop in schema["properties"].items()
    ]


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def build_openapi(app: Flask) -> dict[str, Any]:
    """Describe every documented route under /api/ of `app` as an OpenAPI 3.1 document."""
    components: dict[str, Any] = {}
    error_ref = _schema_ref(ErrorResponse, components)
    paths: dict[str, Any] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        doc: ApiDoc | None = getattr(view, "api_doc", None)
        if doc is None:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operation: dict[str, Any] = {
                "operationId": rule.endpoint.replace(".", "_"),
                "summary": doc.summary,
                "tags": [doc.tag],
                "security": [{"bearerAuth": []}, {"cookieAuth": []}],
                "responses": {},
            }
            if doc.description:
                operation["description"] = doc.description
            if doc.query is not None:
                operation["parameters"] = _query_parameters(doc.query)
            if doc.request is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _schema_ref(doc.request, components)}
                    },
                }
            if doc.response is not None:
                operation["responses"]["200"] = {
                    "description": "OK",
                    "content": {
                        "application/json": {"schema": _schema_ref(doc.response, components)}
                    },
                }
            errors: dict[int, tuple[str, type[Schema]] | str] = {
                status: text
                for status, text in STANDARD_ERRORS.items()
                if status != 400 or doc.request is not None
            }
            errors.update(doc.errors)
            for status, spec in sorted(errors.items()):
                text, model = spec if isinstance(spec, tuple) else (spec, None)
                schema = _schema_ref(model, components) if model else error_ref
                operation["responses"][str(status)] = {
                    "description": text,
                    "content": {"application/json": {"schema": schema}},
                }
            paths.setdefault(_openapi_path(rule.rule), {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "credit_app API",
            "version": "1.0.0",
            "description": "Credits of the interior-design app: balance, spending, history, "
            "and admin grants. Authenticate with a personal API token "
            "(`Authorization: Bearer ca_...`) or the session cookie plus "
            "an `X-CSRFToken` header.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal API token from /settings/api-tokens",
                },
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "session"},
            },
        },
    }


def _example(schema_ref: dict[str, str], components: dict[str, Any]) -> Any:
    name = schema_ref["$ref"].rsplit("/", 1)[-1]
    examples = components[name].get("examples")
    return examples[0] if examples else {}


def postman_collection(spec: dict[str, Any]) -> dict[str, Any]:
    """Turn an OpenAPI document from build_openapi into a Postman v2.1 collection."""
    components = spec["components"]["schemas"]
    folders: dict[str, list[dict[str, Any]]] = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            query = [
                {
                    "key": param["name"],
                    "value": str(param["schema"].get("default", "")),
                    "disabled": not param["required"],
                }
                for param in operation.get("parameters", [])
            ]
            request: dict[str, Any] = {
                "method": method.upper(),
                "header": [{"key": "Accept", "value": "application/json"}],
                "url": {
                    "raw": "{{baseUrl}}" + path,
                    "host": ["{{baseUrl}}"],
                    "path": [part for part in path.split("/") if part],
                    "query": query,
                },
                "description": operation.get("description", operation["summary"]),
            }
            if "requestBody" in operation:
                ref = operation["requestBody"]["content"]["application/json"]["schema"]
                request["header"].append({"key": "Content-Type", "value": "application/json"})
                request["body"] = {
                    "mode": "raw",
                    "raw": json.dumps(_example(ref, components), indent=2),
                    "options": {"raw": {"language": "json"}},
                }
            folders.setdefault(operation["tags"][0], []).append(
                {"name": operation["summary"], "request": request}
            )
    return {
        "info": {
            "name": spec["info"]["title"],
            "description": spec["info"]["description"],
            "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json",
        },
        "auth": {
            "type": "bearer",
            "bearer": [{"key": "token", "value": "{{apiToken}}", "type": "string"}],
        },
        "variable": [
            {"key": "baseUrl", "value": "http://127.0.0.1:5000"},
            {"key": "apiToken", "value": ""},
        ],
        "item": [{"name": name, "item": items} for name, items in sorted(folders.items())],
    }
