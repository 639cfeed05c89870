"""Checking an uploaded image before any work or credit is spent on it."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import IO

from PIL import Image, UnidentifiedImageError

from credit_app.errors import InvalidUpload
from credit_app.services.limits import (
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_MEGABYTES,
    MAX_UPLOAD_PIXELS,
    MIN_UPLOAD_SIDE,
)

ALLOWED_FORMATS: dict[str, str] = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclass(frozen=True)
class CheckedUpload:
    data: bytes
    extension: str
    width: int
    height: int


def check_image_upload(stream: IO[bytes] | None, filename: str | None) -> CheckedUpload:
    """Read and check an uploaded image: JPEG, PNG or WebP, at most MAX_UPLOAD_BYTES, of a
    sensible size.

    The type comes from the file's content, not its name. Raises InvalidUpload.
    """
    if stream is None or not filename:
        raise InvalidUpload("Choose a photo to upload (JPEG, PNG or WebP).", field="image")
    data = stream.read(MAX_UPLOAD_BYTES + 1)
    if not data:
        raise InvalidUpload("The file is empty.", field="image")
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidUpload(
            f"The photo is larger than {MAX_UPLOAD_MEGABYTES} MB; choose a smaller one.",
            field="image",
        )
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format
            width, height = image.size
            if width * height > MAX_UPLOAD_PIXELS:
                raise InvalidUpload(
                    "The photo has too many pixels "
                    f"({MAX_UPLOAD_PIXELS // 1_000_000} megapixels at most).",
                    field="image",
                )
            image.verify()
    except InvalidUpload:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InvalidUpload("That file is not a JPEG, PNG or WebP image.", field="image") from None
    if image_format not in ALLOWED_FORMATS:
        raise InvalidUpload(
            f"{image_format} images are not supported; use JPEG, PNG or WebP.", field="image"
        )
    if min(width, height) < MIN_UPLOAD_SIDE:
        raise InvalidUpload(
            f"The photo is too small: use at least {MIN_UPLOAD_SIDE} by {MIN_UPLOAD_SIDE} px.",
            field="image",
        )
    return CheckedUpload(data, ALLOWED_FORMATS[image_format], width, height)
