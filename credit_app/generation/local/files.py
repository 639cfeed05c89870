"""The local provider's input and output: the upload opened as an upright sRGB image of a
bounded size, and each result written whole (through a temporary file) as
`<generation_id>.<extension>` in the request's output folder.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from credit_app.generation.base import GenerationError, GenerationRequest, GenerationResult
from credit_app.generation.local.imaging import fit

try:
    from PIL import ImageCms
except ImportError:  # Pillow built without littlecms: colours are used as they are.
    ImageCms = None

log = logging.getLogger(__name__)


MAX_IMAGE_SIDE = 1600
MAX_INPUT_PIXELS = 40_000_000
MIN_INPUT_SIDE = 16

UNREADABLE_MESSAGE = "The uploaded image could not be read; upload a JPEG, PNG or WebP photo."
PROCESSING_MESSAGE = "The image could not be processed; try another photo."


def open_image(path: Path, max_side: int) -> Image.Image:
    """The upload as an upright RGB image at most `max_side` pixels long.

    Raises GenerationError for a missing, unreadable, too large or too small image.
    """
    try:
        with Image.open(path) as opened:
            if opened.width * opened.height > MAX_INPUT_PIXELS:
                raise GenerationError("The photo has too many pixels (40 megapixels at most).")
            opened.draft("RGB", (max_side, max_side))
            opened.load()
            image = ImageOps.exif_transpose(opened)
            image = _to_rgb(image)
    except GenerationError:
        raise
    except FileNotFoundError:
        raise GenerationError("The uploaded image is missing; upload it again.") from None
    except Image.DecompressionBombError:
        raise GenerationError("The photo has too many pixels (40 megapixels at most).") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise GenerationError(UNREADABLE_MESSAGE) from None
    if min(image.size) < MIN_INPUT_SIDE:
        raise GenerationError(f"The photo is too small ({MIN_INPUT_SIDE} pixels a side at least).")
    if max(image.size) > max_side:
        image = image.resize(fit(image.size, max_side), Image.Resampling.LANCZOS)
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to RGB: transparency onto white, 16-bit and float scaled down, and
    an embedded colour profile converted to sRGB when possible."""
    icc = image.info.get("icc_profile")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = image.convert("F") if image.mode == "F" else image.convert("I")
        scale = 1 / 257 if image.getextrema()[1] > 255 else 1.0
        image = image.point(lambda value: value * scale).convert("L")
    if image.mode == "P" or image.mode.endswith("A") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    rgb = image.convert("RGB")
    return _to_srgb(rgb, icc) if icc else rgb


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    if ImageCms is None:
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(
            image, source, ImageCms.createProfile("sRGB"), outputMode="RGB"
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image
    return converted if converted is not None else image


def save(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary file, so a half-written output is never left under `path`."""
    partial = path.with_name(f".{path.name}.part")
    try:
        write(partial)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise GenerationError(
            "The result could not be saved; please try again.", retryable=True
        ) from exc
    except ValueError as exc:
        partial.unlink(missing_ok=True)
        log.exception("could not encode %s", path.name)
        raise GenerationError(PROCESSING_MESSAGE) from exc


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")


def check_generation_id(generation_id: str) -> None:
    """The id names the output file, so it must be a plain name. Raises GenerationError."""
    if not _PLAIN_NAME.fullmatch(generation_id):
        raise GenerationError("The generation id is not valid.")


def output_path(request: GenerationRequest, extension: str) -> Path:
    """`<generation_id>.<extension>` inside the output folder. Raises GenerationError."""
    check_generation_id(request.generation_id)
    try:
        request.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GenerationError(
            "The result could not be saved; please try again.", retryable=True
        ) from exc
    return request.output_dir / f"{request.generation_id}.{extension}"


def write_still(image: Image.Image, request: GenerationRequest) -> GenerationResult:
    path = output_path(request, "png")
    save(path, lambda target: image.save(target, format="PNG", compress_level=6))
    return GenerationResult(path, "image/png", image.width, image.height)
