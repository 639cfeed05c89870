"""Image derivatives: small WebP copies of an upload and its result, sized for their slots.

A design is shown in two kinds of slot: a gallery tile (about 200-400 CSS px wide) and the
result view (up to about 900 CSS px). Each stored image gets WebP copies at VARIANT_WIDTHS
(never wider than the image itself), stored in the same storage as the original, next to it
(`12/345/output.png` -> `12/345/output-640w.webp`), so web dynos that share no disk all find
them. Pages use them through `srcset`/`sizes`; the original is sent only as a download.
"""

from __future__ import annotations

import io
import logging
import posixpath
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from credit_app.platform.storage import Storage, sibling_key

log = logging.getLogger(__name__)

VARIANT_WIDTHS = (320, 640, 1280)
WEBP_QUALITY = 78
VARIANT_MEDIA_TYPE = "image/webp"
# Decoding more than this is refused (the uploads check allows 40 MP; this is a second guard).
MAX_SOURCE_PIXELS = 50_000_000


class VariantError(Exception):
    """The image could not be decoded, so no derivatives were made."""


def variant_key(key: str, width: int) -> str:
    """Where the `width` px WebP copy of the object `key` is kept (beside it)."""
    stem = posixpath.splitext(posixpath.basename(key))[0]
    return sibling_key(key, f"{stem}-{width}w.webp")


def widths_for(image_width: int) -> list[int]:
    """The variant widths worth making for an image `image_width` px wide: every standard
    width below it, and the smallest one even for a tiny image (never upscaled past it)."""
    widths = [width for width in VARIANT_WIDTHS if width < image_width]
    return widths or [VARIANT_WIDTHS[0]]


def _first_frame(path: Path) -> Image.Image:
    """The image (an animation's first frame), upright and in RGB. Raises VariantError."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_SOURCE_PIXELS:
                raise VariantError(f"{path.name} is too large to resize")
            image.seek(0)
            frame = ImageOps.exif_transpose(image)
            return frame.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise VariantError(f"{path.name} could not be read: {exc}") from exc


def encode_variant(image: Image.Image, width: int) -> bytes:
    """`image` scaled to at most `width` px wide (keeping its shape), as WebP bytes."""
    copy = image.copy()
    if copy.width > width:
        height = max(1, round(copy.height * width / copy.width))
        copy = copy.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    copy.save(buffer, "WEBP", quality=WEBP_QUALITY, method=4)
    return buffer.getvalue()


def make_variants(source: Path, key: str, storage: Storage) -> list[int]:
    """Make and store the WebP copies of the local file `source`, whose original is stored
    under `key`; returns their widths. Storing again overwrites the same keys, so running it
    twice changes nothing.

    Raises VariantError (the file is not a readable image), StorageUnavailable.
    """
    image = _first_frame(source)
    widths = widths_for(image.width)
    for width in widths:
        storage.put(variant_key(key, width), encode_variant(image, width), VARIANT_MEDIA_TYPE)
    return widths
