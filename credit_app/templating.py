"""What every template can use: the signed-in user's credits, and the response Vary header."""

from __future__ import annotations

from flask import Flask, Response, request
from flask_login import current_user

from credit_app.features import FEATURES
from credit_app.services import credits


def init_templating(app: Flask) -> None:
    @app.context_processor
    def inject_credits() -> dict:
        def sidebar_credits() -> credits.UserCredits | None:
            if not current_user.is_authenticated:
                return None
            return credits.get_user_credits(current_user.id)

        return {"sidebar_credits": sidebar_credits, "all_features": FEATURES.values(),
                "all_features_by_key": FEATURES}

    @app.after_request
    def vary_on_htmx(response: Response) -> Response:
        if request.headers.get("HX-Request") and "HX-Request" not in response.vary:
            response.vary.add("HX-Request")
        return response
