"""The API's OpenAPI document and a readable page of it."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template

from credit_app.platform.database import keep_connection_for_request
from credit_app.web.api_limits import check_api_limits
from credit_app.web.auth import identify_api_caller
from credit_app.web.openapi import build_openapi

bp = Blueprint("api_docs", __name__, url_prefix="/api")
bp.before_request(keep_connection_for_request)
bp.before_request(identify_api_caller)
bp.before_request(check_api_limits)


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(build_openapi(current_app))


@bp.get("/docs")
def docs():
    return render_template("api/docs.html", spec=build_openapi(current_app))
