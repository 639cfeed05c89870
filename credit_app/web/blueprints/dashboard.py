"""The signed-in app: overview, the six generation features, results, and the credit counter."""

from __future__ import annotations

import posixpath

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    send_file,
    send_from_directory,
    url_for,
)
from flask_login import current_user, login_required
from werkzeug.exceptions import RequestEntityTooLarge

from credit_app.errors import DomainError
from credit_app.generation.features import FEATURES, Feature
from credit_app.generation.images import VARIANT_MEDIA_TYPE, variant_key
from credit_app.generation.options import MAX_PROMPT_LENGTH, MOTIONS, ROOM_TYPES, styles_for
from credit_app.generation.uploads import check_image_upload
from credit_app.jobs import enqueue_after_commit, registry
from credit_app.models import CreditReservation, GenerationStatus
from credit_app.platform.extensions import db, limiter
from credit_app.platform.storage import get_storage
from credit_app.services import analytics, credits, fair_use, generations
from credit_app.services.limits import MAX_UPLOAD_BYTES
from credit_app.web import htmx
from credit_app.web.credit_check import credit_required, upgrade_modal_response
from credit_app.web.responses import http_error_response, upload_too_large_response

bp = Blueprint("dashboard", __name__)
FEATURES_BY_SLUG: dict[str, Feature] = {feature.slug: feature for feature in FEATURES.values()}


def render(page: str, fragment: str, status: int = 200, **context) -> Response:
    """One URL, page or fragment: htmx gets the fragment, a browser the page."""
    template = fragment if htmx.is_htmx_request() else page
    return htmx.vary_on_htmx(make_response(render_template(template, **context), status))


@bp.get("/")
def index():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.home"))
    from credit_app.billing.plans import plans
    from credit_app.generation.landing_examples import EXAMPLES, ensure_examples, examples_version

    try:
        ensure_examples()
        examples = EXAMPLES
    except Exception:
        current_app.logger.exception("the landing examples could not be made")
        examples = ()
    return render_template(
        "landing.html",
        features=FEATURES.values(),
        examples=examples,
        examples_version=examples_version(),
        plans=plans(),
    )


@bp.get("/examples/<version>/<name>")
def landing_example(version: str, name: str):
    """An image of a landing example; its URL names the version, so it is cached a year."""
    from credit_app.generation.landing_examples import ensure_examples, examples_version

    if version != examples_version():
        abort(404)
    folder = ensure_examples()
    response = send_from_directory(folder, name, mimetype=VARIANT_MEDIA_TYPE, max_age=0)
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


@bp.get("/dashboard")
@login_required
def home():
    page = credits.get_activity(current_user.id, request.args.get("cursor"), limit=20)
    return render_template(
        "dashboard/home.html",
        history=page,
        features=FEATURES.values(),
        recent=generations.list_generations(current_user.id, limit=6),
    )


@bp.get("/dashboard/credits")
@login_required
def sidebar_credits():
    """The credit counter: the same fragment for first paint, polling and swaps."""
    response = make_response(render_template("dashboard/_sidebar_credits.html"))
    response.headers["Cache-Control"] = "no-store"
    return htmx.vary_on_htmx(response)


@bp.post("/dashboard/preferences/sidebar")
@login_required
def toggle_sidebar():
    current_user.sidebar_collapsed = request.form.get("collapsed") == "true"
    db.session.commit()
    return "", 204


def feature_context(feature: Feature) -> dict:
    return {
        "feature": feature,
        "room_types": ROOM_TYPES,
        "styles": styles_for(feature.key),
        "motions": MOTIONS,
        "check": credits.validate_credit_usage(current_user.id, feature.key),
        "fair_use": fair_use.fair_use_of(current_user.id),
        "max_upload_bytes": MAX_UPLOAD_BYTES,
        "max_prompt_length": MAX_PROMPT_LENGTH,
    }


@bp.get("/dashboard/<slug>")
@login_required
def feature_page(slug: str):
    feature = FEATURES_BY_SLUG.get(slug) or abort(404)
    return render_template(
        "dashboard/feature.html",
        form_values={},
        errors={},
        new_generation_id=generations.new_generation_id(),
        **feature_context(feature),
    )


def _start(feature: Feature, reservation: CreditReservation):
    try:
        options = generations.parse_options(feature.key, request.form)
        image = request.files.get("image")
        upload = check_image_upload(image, image.filename if image else None)
    except DomainError as exc:
        db.session.rollback()
        response = render(
            "dashboard/feature.html",
            "dashboard/_feature_form.html",
            exc.status,
            form_values=request.form,
            errors={exc.details.get("field", "form"): exc.message},
            new_generation_id=request.form.get("generation_id"),
            oob_credits=True,
            **feature_context(feature),
        )
        return htmx.retarget(response, "#feature-form", "outerHTML")
    generation, created = generations.start_generation(reservation, options, upload, get_storage())
    if created or generation.status == GenerationStatus.QUEUED:
        enqueue_after_commit(registry.generation_job(generation.queue), generation.id)
    db.session.commit()
    if not htmx.is_htmx_request():
        return redirect(url_for("dashboard.generation_detail", generation_pk=generation.id))
    return render_template(
        "dashboard/_generation_progress.html",
        generation=generation,
        oob_credits=True,
        next_generation_id=generations.new_generation_id(),
    )


def _make_feature_view(feature: Feature):
    """The start view of one feature; named before decorating, since the rate limiter keys
    its counters by the view's name."""

    def start(reservation: CreditReservation):
        return _start(feature, reservation)

    start.__name__ = start.__qualname__ = f"start_{feature.key}"
    view = credit_required(feature.key)(start)
    return limiter.limit(lambda: current_app.config["RATELIMIT_GENERATE"])(view)


# The generation start views, one per feature.
START_ENDPOINTS = frozenset(f"{bp.name}.start_{key}" for key in FEATURES)
for _feature in FEATURES.values():
    bp.add_url_rule(
        f"/dashboard/{_feature.slug}",
        endpoint=f"start_{_feature.key}",
        view_func=_make_feature_view(_feature),
        methods=["POST"],
    )


@bp.errorhandler(RequestEntityTooLarge)
def upload_too_large(exc: RequestEntityTooLarge) -> Response:
    """A generation form whose upload is over the request limit, sent by htmx, gets the
    message under its photo field; any other request the usual 413."""
    if request.endpoint in START_ENDPOINTS and htmx.is_htmx_request():
        return upload_too_large_response()
    return http_error_response(exc)


@bp.get("/dashboard/generations")
@login_required
def generation_history():
    return render_template(
        "dashboard/generations.html",
        generations=generations.list_generations(current_user.id, limit=100),
    )


@bp.get("/dashboard/generations/<int:generation_pk>")
@login_required
def generation_detail(generation_pk: int):
    generation = generations.find_generation(current_user.id, generation_pk)
    response = render(
        "dashboard/generation.html",
        "dashboard/_generation_progress.html",
        generation=generation,
        oob_credits=generation.is_finished,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/dashboard/generations/<int:generation_pk>/<any(input, output):which>")
@login_required
def generation_file(generation_pk: int, which: str):
    """The upload or the result, to its owner only (404 for anyone else), streamed from
    storage through the app: the bucket itself is never public."""
    generation = generations.find_generation(current_user.id, generation_pk)
    key = generation.input_path if which == "input" else generation.output_path
    if not key:
        abort(404)
    stream = get_storage().open(key)
    response = send_file(
        stream,
        download_name=posixpath.basename(key),
        max_age=0,
        mimetype=generation.output_media_type if which == "output" else None,
    )
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


# A variant's key names one generation's image at one width and is never rewritten with other
# content, so the browser may keep it for a year without asking again.
VARIANT_CACHE_CONTROL = "private, max-age=31536000, immutable"


@bp.get("/dashboard/generations/<int:generation_pk>/<any(input, output):which>/<int:width>w.webp")
@login_required
def generation_variant(generation_pk: int, which: str, width: int):
    """A WebP copy of the upload or the result (generation/images.py), to its owner only."""
    generation = generations.find_generation(current_user.id, generation_pk)
    key = generation.input_path if which == "input" else generation.output_path
    if not key or width not in generation.variant_widths(which):
        abort(404)
    response = send_file(
        get_storage().open(variant_key(key, width)),
        mimetype=VARIANT_MEDIA_TYPE,
        max_age=0,
        conditional=False,
    )
    response.headers["Cache-Control"] = VARIANT_CACHE_CONTROL
    return response


@bp.post("/dashboard/upgrade-modal/dismissed")
@login_required
def upgrade_modal_dismissed():
    """Record that the user chose Maybe Later (Upgrade Now is recorded where it leads)."""
    feature = request.form.get("feature") if request.form.get("feature") in FEATURES else None
    analytics.track("upgrade_modal_dismissed", current_user.id, feature=feature)
    db.session.commit()
    return "", 204


@bp.get("/dashboard/upgrade-modal")
@login_required
def upgrade_modal():
    """The modal on demand (the counter's button), recorded like the automatic one."""
    feature = request.args.get("feature") if request.args.get("feature") in FEATURES else None
    return upgrade_modal_response(feature)
