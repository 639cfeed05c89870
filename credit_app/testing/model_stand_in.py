"""A local stand-in for a hosted model API speaking Replicate's predictions protocol.

It answers `POST /v1/predictions`, `GET /v1/predictions/<id>` and
`POST /v1/predictions/<id>/cancel` like Replicate does, and serves each output at
`/files/<id>.<ext>`. Outputs are computed from the uploaded image with Pillow (posterized and
tinted by style, a sketch coloured in, the marked area blurred away, a short zoom/pan GIF for
video), so they really depend on the input.

Markers in the prompt steer a prediction, for tests: `[fail]` ends it `failed`, `[slow]` keeps it
`processing` forever, `[flaky]` makes the first identical create call answer 503. The same flags
can be set for every prediction with `StandInState.flags`; `StandInState.fail_next_creates`
answers the next N create calls with 503, and `StandInState.failure_error` is the raw error text
a failed prediction reports.

Run it on its own with `python -m credit_app.testing.model_stand_in --port 5055`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import hashlib
import io
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from PIL import Image, ImageDraw, ImageFilter, ImageOps, UnidentifiedImageError
from werkzeug.serving import make_server

from credit_app.generation.features import FEATURE_KEYS
from credit_app.testing import serve_in_thread, serve_until_interrupted

DEFAULT_TOKEN = "test-token"
# Version ids look like Replicate's: 64 hex digits, one per feature.
DEFAULT_VERSIONS: dict[str, str] = {
    feature: hashlib.sha256(f"credit-app-stand-in/{feature}".encode()).hexdigest()
    for feature in FEATURE_KEYS
}
FAILURE_ERROR = (
    'Traceback (most recent call last):\n  File "/src/predict.py", line 88, in predict\n'
    "ValueError: could not broadcast input array from shape (512,512,3) into shape (64,64,3) "
    "[/opt/models/weights.bin on worker 10.0.3.17]"
)
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
_FLAG_PATTERN = re.compile(r"\[(fail|slow|flaky)\]", re.IGNORECASE)
_DATA_URI = re.compile(r"^data:(image/[a-z0-9.+-]+);base64,(.*)$", re.DOTALL | re.IGNORECASE)
_STYLE_TINTS: dict[str, tuple[int, int, int]] = {
    "modern": (120, 140, 160),
    "scandinavian": (235, 225, 205),
    "industrial": (110, 90, 80),
    "bohemian": (200, 120, 70),
    "minimalist": (240, 240, 240),
    "coastal": (90, 170, 200),
    "mid_century": (200, 150, 60),
    "japandi": (170, 160, 130),
    "farmhouse": (220, 200, 170),
    "mediterranean": (210, 140, 90),
    "craftsman": (140, 100, 60),
    "colonial": (180, 60, 50),
    "tropical": (60, 170, 110),
}
_OUTPUT_TYPES = {"png": "image/png", "gif": "image/gif"}
_MAX_VIDEO_SIDE = 512
_VIDEO_FRAMES = 8


@dataclass
class StoredPrediction:
    """One prediction as the stand-in holds it."""

    id: str
    version: str
    feature: str
    input: dict[str, Any]
    flags: frozenset[str]
    auth_scheme: str
    source: Image.Image = field(repr=False)
    status: str = "starting"
    polls: int = 0
    error: str | None = None
    output: bytes | None = field(default=None, repr=False)
    output_ext: str = "png"
    created_at: str = field(default_factory=lambda: _now())
    started_at: str | None = None
    completed_at: str | None = None


class StandInState:
    """What the stand-in has received and holds, guarded by `lock`; tests read it directly."""

    def __init__(
        self, token: str, versions: Mapping[str, str], polls_until_done: int, retry_after: int
    ) -> None:
        self.token = token
        self.versions = dict(versions)
        self.polls_until_done = polls_until_done
        self.retry_after = retry_after
        self.lock = threading.Lock()
        self.predictions: dict[str, StoredPrediction] = {}
        self.create_statuses: list[int] = []
        self.cancel_requests: list[str] = []
        self.flags: set[str] = set()
        self.fail_next_creates = 0
        self.failure_error = FAILURE_ERROR
        self._flaky_seen: set[str] = set()

    def versions_by_id(self) -> dict[str, str]:
        return {version: feature for feature, version in self.versions.items()}


def create_stand_in_app(
    token: str = DEFAULT_TOKEN,
    polls_until_done: int = 2,
    *,
    versions: Mapping[str, str] | None = None,
    retry_after: int = 0,
) -> Flask:
    """A Flask app speaking Replicate's predictions protocol; its state is `get_state(app)`.

    A prediction finishes on the `polls_until_done`-th poll. `versions` maps feature → version
    id (default DEFAULT_VERSIONS); `retry_after` is the Retry-After sent with a 503.
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024
    app.extensions["model_stand_in"] = StandInState(
        token, versions or DEFAULT_VERSIONS, polls_until_done, retry_after
    )
    app.add_url_rule("/v1/predictions", view_func=_create_prediction, methods=["POST"])
    app.add_url_rule("/v1/predictions/<prediction_id>", view_func=_get_prediction)
    app.add_url_rule(
        "/v1/predictions/<prediction_id>/cancel", view_func=_cancel_prediction, methods=["POST"]
    )
    app.add_url_rule("/files/<prediction_id>.<ext>", view_func=_get_file)
    return app


def get_state(app: Flask) -> StandInState:
    """The StandInState of an app made by create_stand_in_app. Raises KeyError for others."""
    return app.extensions["model_stand_in"]


@contextmanager
def serve_stand_in(
    app: Flask | None = None, host: str = "127.0.0.1", **options: Any
) -> Iterator[str]:
    """Serve `app` (or a new stand-in built with `options`) on a free port in a thread.

    Yields the base URL, e.g. `http://127.0.0.1:54321`; stops the server on exit.
    """
    with serve_in_thread(app or create_stand_in_app(**options), host, "model-stand-in") as url:
        yield url


def run_stand_in(host: str = "127.0.0.1", port: int = 5055, **options: Any) -> None:
    """Serve a stand-in built with `options` in the foreground until interrupted."""
    app = create_stand_in_app(**options)
    state = get_state(app)
    server = make_server(host, port, app, threaded=True)
    print(f"Model API stand-in on http://{host}:{server.server_port}; settings for the app:")
    print(f"MODEL_API_URL=http://{host}:{server.server_port}")
    print(f"MODEL_API_TOKEN={state.token}")
    for feature, version in state.versions.items():
        print(f"MODEL_VERSION_{feature.upper()}={version}")
    serve_until_interrupted(server)


def _state() -> StandInState:
    return get_state(current_app)


def _problem(status: int, title: str, detail: str) -> tuple[Response, int]:
    return jsonify({"title": title, "detail": detail, "status": status}), status


def _authorize(state: StandInState) -> str | None:
    """The auth scheme used if the token is right (Replicate takes Bearer and Token), else None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "token") and token.strip() == state.token:
        return scheme
    return None


def _create_prediction() -> tuple[Response, int]:
    state = _state()
    result = _create(state)
    with state.lock:
        state.create_statuses.append(result[1])
    return result


def _create(state: StandInState) -> tuple[Response, int]:
    auth_scheme = _authorize(state)
    if auth_scheme is None:
        return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _problem(400, "Bad request", "The request body must be a JSON object.")
    feature = state.versions_by_id().get(str(body.get("version")))
    if feature is None:
        return _problem(
            422,
            "Invalid version",
            "The specified version does not exist (or perhaps you don't have "
            "permission to use it?)",
        )
    model_input = body.get("input")
    if not isinstance(model_input, dict):
        return _problem(422, "Input validation failed", "input: Invalid type. Expected: object")
    flags = frozenset(
        state.flags
        | {flag.lower() for flag in _FLAG_PATTERN.findall(str(model_input.get("prompt", "")))}
    )
    if _should_refuse(state, flags, request.get_data()):
        response, status = _problem(503, "Service unavailable", "Please retry shortly.")
        response.headers["Retry-After"] = str(state.retry_after)
        return response, status
    try:
        source = _decode_image(model_input.get("image"))
    except ValueError as error:
        return _problem(422, "Input validation failed", f"image: {error}")
    prediction = StoredPrediction(
        id=uuid.uuid4().hex[:26],
        version=body["version"],
        feature=feature,
        input=model_input,
        flags=flags,
        auth_scheme=auth_scheme,
        source=source,
    )
    with state.lock:
        state.predictions[prediction.id] = prediction
        payload = _serialize(prediction)
    return jsonify(payload), 201


def _should_refuse(state: StandInState, flags: frozenset[str], raw_body: bytes) -> bool:
    with state.lock:
        if state.fail_next_creates > 0:
            state.fail_next_creates -= 1
            return True
        if "flaky" in flags:
            fingerprint = hashlib.sha256(raw_body).hexdigest()
            if fingerprint not in state._flaky_seen:
                state._flaky_seen.add(fingerprint)
                return True
    return False


def _prediction_view(
    view: Callable[[StandInState, StoredPrediction], tuple[Response, int]],
) -> Callable[[str], tuple[Response, int]]:
    """A view of one prediction by id: 401 for a caller without the token, 404 for an unknown
    id, otherwise what `view(state, prediction)` answers."""

    @functools.wraps(view)
    def by_id(prediction_id: str) -> tuple[Response, int]:
        state = _state()
        if _authorize(state) is None:
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        with state.lock:
            prediction = state.predictions.get(prediction_id)
        if prediction is None:
            return _problem(404, "Not found", "Not found.")
        return view(state, prediction)

    return by_id


@_prediction_view
def _get_prediction(state: StandInState, prediction: StoredPrediction) -> tuple[Response, int]:
    with state.lock:
        prediction.polls += 1
        finishing = _advance(state, prediction)
    if finishing:
        _finish(state, prediction)
    with state.lock:
        return jsonify(_serialize(prediction)), 200


def _advance(state: StandInState, prediction: StoredPrediction) -> bool:
    """Move a prediction along one poll (under the lock); True when it should finish now."""
    if prediction.status in TERMINAL:
        return False
    if prediction.started_at is None:
        prediction.started_at = _now()
    if "slow" in prediction.flags or prediction.polls < state.polls_until_done:
        prediction.status = "processing"
        return False
    return True


def _finish(state: StandInState, prediction: StoredPrediction) -> None:
    """Compute the output (outside the lock) and mark the prediction succeeded or failed."""
    if "fail" in prediction.flags:
        output, ext, error = None, "png", state.failure_error
    else:
        output, ext = _render(prediction)
        error = None
    with state.lock:
        if prediction.status in TERMINAL:
            return
        prediction.output, prediction.output_ext, prediction.error = output, ext, error
        prediction.status = "failed" if error else "succeeded"
        prediction.completed_at = _now()


@_prediction_view
def _cancel_prediction(state: StandInState, prediction: StoredPrediction) -> tuple[Response, int]:
    with state.lock:
        state.cancel_requests.append(prediction.id)
        if prediction.status not in TERMINAL:
            prediction.status = "canceled"
            prediction.completed_at = _now()
        return jsonify(_serialize(prediction)), 200


def _get_file(prediction_id: str, ext: str) -> Response | tuple[Response, int]:
    state = _state()
    with state.lock:
        prediction = state.predictions.get(prediction_id)
        output = None
        if prediction is not None and prediction.output_ext == ext:
            output = prediction.output
    if output is None:
        return _problem(404, "Not found", "Not found.")
    return Response(output, mimetype=_OUTPUT_TYPES[ext])


def _serialize(prediction: StoredPrediction) -> dict[str, Any]:
    base = request.host_url.rstrip("/")
    output = None
    if prediction.status == "succeeded":
        output = [f"{base}/files/{prediction.id}.{prediction.output_ext}"]
    return {
        "id": prediction.id,
        "model": f"credit-app/stand-in-{prediction.feature}",
        "version": prediction.version,
        "input": prediction.input,
        "logs": "",
        "output": output,
        "data_removed": False,
        "error": prediction.error,
        "status": prediction.status,
        "created_at": prediction.created_at,
        "started_at": prediction.started_at,
        "completed_at": prediction.completed_at,
        "urls": {
            "get": f"{base}/v1/predictions/{prediction.id}",
            "cancel": f"{base}/v1/predictions/{prediction.id}/cancel",
        },
        "metrics": {"predict_time": 0.01} if prediction.status == "succeeded" else {},
    }


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _decode_image(value: Any) -> Image.Image:
    """Decode a `data:image/...;base64,` URI into an RGB image. Raises ValueError."""
    match = _DATA_URI.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("expected a base64 data URI of an image")
    try:
        data = base64.b64decode(match.group(2), validate=True)
        with Image.open(io.BytesIO(data)) as image:
            return ImageOps.exif_transpose(image).convert("RGB")
    except (binascii.Error, UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise ValueError("cannot identify image file") from None


def _tint(style: Any, seed: Any) -> tuple[int, int, int]:
    red, green, blue = _STYLE_TINTS.get(str(style), (150, 130, 110))
    shift = int(seed) % 32 if isinstance(seed, int) else 0
    return (red + shift) % 256, green, (blue - shift) % 256


def _render(prediction: StoredPrediction) -> tuple[bytes, str]:
    """The prediction's output file and its extension, computed from its input image."""
    image = prediction.source
    model_input = prediction.input
    tint = _tint(model_input.get("style"), model_input.get("seed"))
    if prediction.feature == "video":
        return _render_video(image, str(model_input.get("motion", "zoom_in"))), "gif"
    if prediction.feature == "remove":
        result = _remove(image, model_input.get("mask"))
    elif prediction.feature == "sketch":
        gray = ImageOps.autocontrast(ImageOps.grayscale(image).filter(ImageFilter.SMOOTH_MORE))
        dark = tuple(channel // 4 for channel in tint)
        result = ImageOps.colorize(gray, black=dark, white=(250, 245, 235), mid=tint)
    else:
        posterized = ImageOps.posterize(image, 3)
        result = Image.blend(posterized, Image.new("RGB", image.size, tint), 0.3)
        if prediction.feature == "furnish":
            _draw_furniture(result, tint)
    buffer = io.BytesIO()
    result.save(buffer, format="PNG")
    return buffer.getvalue(), "png"


def _remove(image: Image.Image, mask_uri: Any) -> Image.Image:
    """Blur the mask's white area into its surroundings; with no usable mask, soften it all."""
    radius = max(image.size) / 25
    blurred = image.filter(ImageFilter.GaussianBlur(radius))
    try:
        mask = _decode_image(mask_uri).convert("L").resize(image.size)
    except ValueError:
        return image.filter(ImageFilter.GaussianBlur(2))
    result = image.copy()
    result.paste(blurred, mask=mask)
    return result


def _draw_furniture(image: Image.Image, tint: tuple[int, int, int]) -> None:
    width, height = image.size
    draw = ImageDraw.Draw(image)
    sofa = (width * 0.15, height * 0.62, width * 0.55, height * 0.85)
    table = (width * 0.62, height * 0.70, width * 0.82, height * 0.80)
    draw.rounded_rectangle(sofa, radius=max(width // 40, 1), fill=tint)
    draw.rectangle(table, fill=tuple(channel // 2 for channel in tint))


def _render_video(image: Image.Image, motion: str) -> bytes:
    """A short animated GIF moving over the image as `motion` says."""
    frame = image.copy()
    frame.thumbnail((_MAX_VIDEO_SIDE, _MAX_VIDEO_SIDE))
    width, height = frame.size
    frames = []
    for index in range(_VIDEO_FRAMES):
        step = index / (_VIDEO_FRAMES - 1)
        zoom = 1 + 0.25 * (step if motion != "zoom_out" else 1 - step)
        crop_w, crop_h = width / zoom, height / zoom
        if motion in ("pan_left", "pan_right"):
            crop_w, crop_h = width * 0.8, height
            travel = (width - crop_w) * (step if motion == "pan_right" else 1 - step)
            box = (travel, 0, travel + crop_w, crop_h)
        else:
            left, top = (width - crop_w) / 2, (height - crop_h) / 2
            box = (left, top, left + crop_w, top + crop_h)
        frames.append(frame.resize((width, height), box=box).quantize(colors=128))
    buffer = io.BytesIO()
    frames[0].save(
        buffer, format="GIF", save_all=True, append_images=frames[1:], duration=120, loop=0
    )
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the model API stand-in.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5055)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--polls-until-done", type=int, default=2)
    args = parser.parse_args(argv)
    run_stand_in(args.host, args.port, token=args.token, polls_until_done=args.polls_until_done)


if __name__ == "__main__":
    main()
