"""A provider that runs generations on a hosted model API speaking Replicate's predictions protocol.

The protocol: `POST {base_url}/v1/predictions` with `Authorization: Bearer <token>` and
`{"version": ..., "input": {...}}` answers 201 with a prediction; `GET /v1/predictions/{id}` is
polled until its status is `succeeded`, `failed` or `canceled`; a successful prediction's
`output` is a URL (or a list of URLs) of the file to download. A prediction that runs past the
deadline is cancelled with `POST /v1/predictions/{id}/cancel`.

Only `{base_url}` ever receives the API token: the prediction's own `urls` are not followed,
and an output file is fetched with the token only when it lives on the same origin.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import io
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from PIL import Image, ImageDraw, UnidentifiedImageError

from credit_app.generation.base import GenerationError, GenerationRequest, GenerationResult
from credit_app.generation.features import FEATURE_KEYS
from credit_app.platform.http_api import HttpApiClient, checked_base_url

logger = logging.getLogger(__name__)

MAX_OUTPUT_BYTES = 50 * 1024 * 1024
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
RETRYABLE_STATUS_CODES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_SECONDS = 30.0

IMAGE_TYPES: dict[str, str] = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
}
VIDEO_TYPES: dict[str, str] = {"video/mp4": "mp4"}
# The media types each kind of feature may return (video models often answer with a GIF).
_ACCEPTED_TYPES: dict[bool, dict[str, str]] = {
    False: IMAGE_TYPES,
    True: {**VIDEO_TYPES, "image/gif": "gif", "image/webp": "webp"},
}
_EXTENSION_TYPES = {ext: media for media, ext in {**IMAGE_TYPES, **VIDEO_TYPES}.items()}
_EXTENSION_TYPES["jpeg"] = "image/jpeg"

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# Option keys forwarded to the model as-is (the mask is turned into an image first).
_PLAIN_INPUTS = ("prompt", "style", "room_type", "motion")

# Kinds of failure worth telling the user apart, recognised in the model's raw error text.
_SAFETY_FAILURE = re.compile(r"nsfw|safety (checker|filter)|sensitive content", re.IGNORECASE)
_RESOURCE_FAILURE = re.compile(r"out ?of ?memory|\bOOM\b|timed out|\btimeout\b", re.IGNORECASE)

_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class _Attempt:
    """What one HTTP exchange gave: a response, or the transport error that stopped it."""

    response: httpx.Response | None = None
    error: httpx.TransportError | None = None


class HttpModelProvider(HttpApiClient):
    """Runs each feature on its configured model version of a Replicate-compatible API.

    Owns the httpx client it creates (close it with `close()` or use it as a context manager);
    an `http_client` passed in stays the caller's to close.
    """

    name = "http"

    def __init__(
        self,
        base_url: str,
        api_token: str,
        model_versions: Mapping[str, str],
        timeout_seconds: float = 120,
        poll_interval: float = 1.0,
        http_client: httpx.Client | None = None,
        *,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
    ) -> None:
        """Raises ValueError for a malformed URL, an empty token, or an unknown feature name."""
        self.base_url = checked_base_url(base_url)
        if not api_token:
            raise ValueError("api_token must not be empty")
        unknown = sorted(set(model_versions) - set(FEATURE_KEYS))
        if unknown:
            raise ValueError(
                f"unknown feature(s) in model_versions: {', '.join(unknown)}; "
                f"expected some of: {', '.join(FEATURE_KEYS)}"
            )
        empty = sorted(feature for feature, version in model_versions.items() if not version)
        if empty:
            raise ValueError(f"empty model version for: {', '.join(empty)}")
        if timeout_seconds <= 0 or poll_interval <= 0:
            raise ValueError("timeout_seconds and poll_interval must be positive")
        self.model_versions = dict(model_versions)
        self.timeout_seconds = float(timeout_seconds)
        self.poll_interval = float(poll_interval)
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.max_output_bytes = max_output_bytes
        self._token = api_token
        self._origin = _origin(self.base_url)
        super().__init__(http_client, httpx.Timeout(30.0, connect=10.0))

    @classmethod
    def from_env_config(
        cls,
        config: Mapping[str, Any],
        *,
        required_features: Iterable[str] = FEATURE_KEYS,
        http_client: httpx.Client | None = None,
    ) -> HttpModelProvider:
        """Build from MODEL_API_URL, MODEL_API_TOKEN and MODEL_VERSION_<FEATURE> keys.

        MODEL_API_TIMEOUT_SECONDS and MODEL_API_POLL_INTERVAL are optional. Raises ValueError
        naming every missing key (a version is needed for each of `required_features`).
        """
        required = ["MODEL_API_URL", "MODEL_API_TOKEN"]
        required += [f"MODEL_VERSION_{feature.upper()}" for feature in required_features]
        missing = [key for key in required if not str(config.get(key) or "").strip()]
        if missing:
            raise ValueError(
                "The hosted model provider needs these settings: " + ", ".join(missing)
            )
        versions: dict[str, str] = {}
        for feature in FEATURE_KEYS:
            version = str(config.get(f"MODEL_VERSION_{feature.upper()}") or "").strip()
            if version:
                versions[feature] = version
        extra: dict[str, float] = {}
        for key, argument in (
            ("MODEL_API_TIMEOUT_SECONDS", "timeout_seconds"),
            ("MODEL_API_POLL_INTERVAL", "poll_interval"),
        ):
            if config.get(key) not in (None, ""):
                try:
                    extra[argument] = float(config[key])
                except (TypeError, ValueError):
                    raise ValueError(f"{key} must be a number, got {config[key]!r}") from None
        return cls(
            str(config["MODEL_API_URL"]).strip(),
            str(config["MODEL_API_TOKEN"]).strip(),
            versions,
            http_client=http_client,
            **extra,
        )

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Run `request` on the model and save its output as `<output_dir>/<generation_id>.<ext>`.

        Raises GenerationError (with a message safe to show the user; `retryable` when trying
        again later may work), and ValueError for a generation id unfit for a file name.
        """
        if not _SAFE_ID.match(request.generation_id):
            raise ValueError(f"generation_id {request.generation_id!r} is not a safe file name")
        version = self.model_versions.get(request.feature)
        if version is None:
            raise GenerationError(
                f"The '{request.feature}' feature has no model configured on the hosted model "
                "service."
            )
        deadline = time.monotonic() + self.timeout_seconds
        body = {"version": version, "input": self._build_input(request)}
        prediction = self._create(body, deadline)
        prediction = self._wait(prediction, deadline)
        status = prediction.get("status")
        if status == "failed":
            raise _failure_error(prediction)
        if status == "canceled":
            raise GenerationError("The model service cancelled this generation.", retryable=True)
        return self._save_output(request, prediction.get("output"))

    def _build_input(self, request: GenerationRequest) -> dict[str, Any]:
        try:
            data = request.input_path.read_bytes()
        except OSError:
            logger.exception("cannot read the upload for generation %s", request.generation_id)
            raise GenerationError("The uploaded photo could not be read.") from None
        media_type = _sniff_image_type(data)
        if media_type is None:
            raise GenerationError("The uploaded photo is not a JPEG, PNG or WebP image.")
        model_input: dict[str, Any] = {"image": _data_uri(media_type, data)}
        for key in _PLAIN_INPUTS:
            value = request.options.get(key)
            if value not in (None, ""):
                model_input[key] = value
        if request.options.get("mask") is not None:
            model_input["mask"] = _mask_data_uri(data, request.options["mask"])
        model_input["seed"] = request.seed
        return model_input

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}

    def _timeout(self, deadline: float) -> httpx.Timeout:
        remaining = max(deadline - time.monotonic(), 0.5)
        return httpx.Timeout(min(30.0, remaining), connect=min(10.0, remaining))

    def _send(self, method: str, url: str, deadline: float, **kwargs: Any) -> _Attempt:
        try:
            response = self._client.request(
                method, url, headers=self._headers(), timeout=self._timeout(deadline), **kwargs
            )
        except httpx.TransportError as error:
            return _Attempt(error=error)
        return _Attempt(response=response)

    def _create(self, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        """POST the prediction, retrying 429/5xx and failed connections with backoff."""
        url = f"{self.base_url}/v1/predictions"
        for attempt in range(self.max_retries + 1):
            result = self._send("POST", url, deadline, json=body)
            response = result.response
            if response is not None and response.status_code in (200, 201):
                return _prediction_from(response)
            if response is not None and response.status_code not in RETRYABLE_STATUS_CODES:
                raise _rejection_error(response)
            if result.error is not None and not isinstance(result.error, _CONNECT_ERRORS):
                # The request may have reached the service: sending it again could start
                # (and bill) a second prediction, so leave the decision to the caller.
                logger.warning("model API create failed mid-request: %r", result.error)
                raise GenerationError(
                    "The model service did not answer in time. Please try again.",
                    retryable=True,
                )
            delay = self._retry_delay(attempt, response)
            is_last = attempt == self.max_retries
            if is_last or time.monotonic() + delay >= deadline:
                break
            logger.info(
                "model API create attempt %d failed (%s); retrying in %.2fs",
                attempt + 1,
                _describe(result),
                delay,
            )
            time.sleep(delay)
        logger.warning("model API create gave up: %s", _describe(result))
        raise GenerationError(
            "The model service is unavailable right now. Please try again in a few minutes.",
            retryable=True,
        )

    def _retry_delay(self, attempt: int, response: httpx.Response | None) -> float:
        backoff = self.retry_backoff * (2**attempt)
        if response is not None:
            retry_after = _parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                return min(retry_after, MAX_RETRY_AFTER_SECONDS)
        return backoff

    def _wait(self, prediction: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Poll until the prediction reaches a terminal status; cancel it past the deadline."""
        prediction_id = prediction["id"]
        url = f"{self.base_url}/v1/predictions/{prediction_id}"
        transient_failures = 0
        while prediction.get("status") not in TERMINAL_STATUSES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._cancel(prediction_id)
                raise GenerationError(
                    "The model took too long to finish this generation. Please try again.",
                    retryable=True,
                )
            time.sleep(min(self.poll_interval, remaining))
            result = self._send("GET", url, deadline)
            response = result.response
            if response is not None and response.status_code == 200:
                prediction = _prediction_from(response)
                transient_failures = 0
                continue
            if response is not None and response.status_code not in RETRYABLE_STATUS_CODES:
                raise _rejection_error(response)
            transient_failures += 1
            if transient_failures > self.max_retries:
                logger.warning("model API polling gave up: %s", _describe(result))
                self._cancel(prediction_id)
                raise GenerationError(
                    "The model service stopped answering. Please try again in a few minutes.",
                    retryable=True,
                )
        return prediction

    def _cancel(self, prediction_id: str) -> None:
        """Ask the service to stop the prediction; a failure here is only logged."""
        url = f"{self.base_url}/v1/predictions/{prediction_id}/cancel"
        result = self._send("POST", url, time.monotonic() + 5.0)
        if result.response is None or result.response.status_code >= 400:
            logger.warning("cancelling prediction %s failed: %s", prediction_id, _describe(result))

    def _save_output(self, request: GenerationRequest, output: Any) -> GenerationResult:
        url = _first_output_url(output)
        if url is None:
            logger.warning("prediction output has no file URL: %.200r", output)
            raise GenerationError("The model returned no result. Please try again.", retryable=True)
        request.output_dir.mkdir(parents=True, exist_ok=True)
        partial = request.output_dir / f".{request.generation_id}.part"
        try:
            media_type, ext = self._download(url, partial, request.feature == "video")
            final = request.output_dir / f"{request.generation_id}.{ext}"
            width, height = _verify_output(partial, media_type)
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        return GenerationResult(
            output_path=final, media_type=media_type, width=width, height=height
        )

    def _download(self, url: str, target: Path, is_video: bool) -> tuple[str, str]:
        """Write the output file at `url` to `target`; return its media type and extension."""
        accepted = _ACCEPTED_TYPES[is_video]
        if url.startswith("data:"):
            media_type, data = _decode_data_uri(url, self.max_output_bytes)
            ext = accepted.get(media_type)
            if ext is None:
                raise _bad_output(f"data URI of type {media_type!r}")
            target.write_bytes(data)
            return media_type, ext
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise _bad_output(f"output URL scheme {scheme!r}")
        headers = self._headers() if _origin(url) == self._origin else {}
        try:
            with self._client.stream(
                "GET",
                url,
                headers=headers,
                follow_redirects=True,
                timeout=httpx.Timeout(60.0, connect=10.0),
            ) as response:
                if response.status_code != 200:
                    logger.warning("output download answered %d", response.status_code)
                    raise GenerationError(
                        "The model's result could not be downloaded.", retryable=True
                    )
                media_type = _output_media_type(response, url)
                ext = accepted.get(media_type)
                if ext is None:
                    raise _bad_output(f"content type {media_type!r}")
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > self.max_output_bytes:
                    raise _too_large()
                size = 0
                with target.open("wb") as file:
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > self.max_output_bytes:
                            raise _too_large()
                        file.write(chunk)
        except httpx.TransportError as error:
            logger.warning("output download failed: %r", error)
            raise GenerationError(
                "The model's result could not be downloaded.", retryable=True
            ) from None
        if size == 0:
            raise _bad_output("an empty file")
        return media_type, ext


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _describe(result: _Attempt) -> str:
    if result.response is not None:
        return f"HTTP {result.response.status_code}"
    return repr(result.error)


def _prediction_from(response: httpx.Response) -> dict[str, Any]:
    try:
        prediction = response.json()
    except ValueError:
        prediction = None
    if not isinstance(prediction, dict) or not _SAFE_ID.match(str(prediction.get("id", ""))):
        logger.warning(
            "model API sent an unexpected prediction body (HTTP %d)", response.status_code
        )
        raise GenerationError("The model service sent an unexpected answer.", retryable=True)
    return prediction


def _rejection_error(response: httpx.Response) -> GenerationError:
    """A non-retryable answer: log the service's detail, tell the user only what kind it was."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    logger.warning("model API refused the request: HTTP %d %.300r", response.status_code, detail)
    if response.status_code in (401, 403):
        return GenerationError("The model service refused our credentials. Please contact support.")
    if response.status_code == 402:
        return GenerationError("The model service account needs attention. Please contact support.")
    if response.status_code in (404, 422):
        return GenerationError("The model service rejected this request.")
    return GenerationError(f"The model service refused this request (HTTP {response.status_code}).")


def _failure_error(prediction: dict[str, Any]) -> GenerationError:
    """Turn a failed prediction into a short user-safe summary; the raw error only goes to logs."""
    raw = str(prediction.get("error") or "")
    logger.warning("prediction %s failed: %.500r", prediction.get("id"), raw)
    if _SAFETY_FAILURE.search(raw):
        return GenerationError("The model's safety filter blocked this image.")
    if _RESOURCE_FAILURE.search(raw):
        return GenerationError(
            "The model ran out of resources on this image. Please try again.", retryable=True
        )
    return GenerationError("The model could not process this image.")


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _sniff_image_type(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _data_uri(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _mask_data_uri(image_data: bytes, mask: Any) -> str:
    """Render the x, y, w, h fractions as a PNG mask the image's size: white = area to remove."""
    try:
        if isinstance(mask, Mapping):
            x, y, w, h = (float(mask[key]) for key in ("x", "y", "w", "h"))
        else:
            x, y, w, h = (float(value) for value in mask)
    except (KeyError, TypeError, ValueError):
        raise GenerationError("The marked area is not valid.") from None
    try:
        with Image.open(io.BytesIO(image_data)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise GenerationError("The uploaded photo could not be read.") from None
    canvas = Image.new("L", (width, height), 0)
    left, top = max(0.0, x) * width, max(0.0, y) * height
    right, bottom = min(1.0, x + w) * width, min(1.0, y + h) * height
    if right - left < 1 or bottom - top < 1:
        raise GenerationError("The marked area is not valid.")
    ImageDraw.Draw(canvas).rectangle((left, top, right - 1, bottom - 1), fill=255)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return _data_uri("image/png", buffer.getvalue())


def _first_output_url(output: Any) -> str | None:
    if isinstance(output, list):
        output = next((item for item in output if isinstance(item, str)), None)
    return output if isinstance(output, str) and output else None


def _decode_data_uri(uri: str, limit: int) -> tuple[str, bytes]:
    header, sep, payload = uri.partition(",")
    if not sep or not header.endswith(";base64"):
        raise _bad_output("a data URI that is not base64")
    if len(payload) * 3 // 4 > limit:
        raise _too_large()
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_output("an undecodable data URI") from None
    return header[len("data:") : -len(";base64")].split(";")[0].lower(), data


def _output_media_type(response: httpx.Response, url: str) -> str:
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media_type in ("", "application/octet-stream", "binary/octet-stream"):
        suffix = Path(urlsplit(url).path).suffix.lstrip(".").lower()
        media_type = _EXTENSION_TYPES.get(suffix, media_type)
    return media_type


def _verify_output(path: Path, media_type: str) -> tuple[int, int]:
    """Check the file really is what its media type says; return its width and height."""
    if media_type in VIDEO_TYPES:
        with path.open("rb") as file:
            head = file.read(12)
        if head[4:8] != b"ftyp":
            raise _bad_output("a video that is not MP4")
        return 0, 0
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            if Image.MIME.get(image.format or "") != media_type:
                raise _bad_output(f"{image.format} data labelled {media_type}")
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
        raise _bad_output("an unreadable image") from None


def _bad_output(what: str) -> GenerationError:
    logger.warning("model output rejected: %s", what)
    return GenerationError(
        "The model returned a result we could not use. Please try again.", retryable=True
    )


def _too_large() -> GenerationError:
    logger.warning("model output exceeds the size limit")
    return GenerationError("The model's result was too large to store.")
