"""The local provider: real image work with Pillow, so the product runs without a model API.

Every output is a new image computed from the upload (never a canned file), by one module per
tool:

- redecorate (interior) / exterior: per-style tone mapping and recolouring (curve, palette,
  saturation, contrast, vignette; exterior styles also tint the sky).
- sketch: the sketch's closed regions are filled with style colours, shaded with soft
  ambient occlusion and a window light, and the strokes kept as darker contours.
- furnish: furniture for the room type drawn in the style's colours, with soft shadows, on
  the floor of the (lightly restyled) photo.
- remove_object (remove): the marked rectangle is filled from its surroundings (multi-scale
  diffusion plus matched grain), with a feathered edge.
- video: a ~2.4 s animated WebP (GIF if Pillow cannot write animated WebP) moving a virtual
  camera over the photo.

They share `styles` (the looks, materials and adjustments), `imaging` (small image helpers)
and `files` (the upload in, the result out).

The optional prompt nudges the look deterministically: words such as "warm"/"cozy" and
"cool"/"crisp" shift the colour temperature, "bright"/"airy" and "dark"/"moody" the brightness,
"vibrant"/"bold" and "muted"/"calm" the saturation (see styles._PROMPT_WORDS; negations are not
understood). Outputs depend only on the upload, the options and the request's seed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

from PIL import Image

from credit_app.errors import ValidationFailed
from credit_app.generation.base import GenerationError, GenerationRequest, GenerationResult
from credit_app.generation.local import exterior, furnish, redecorate, remove_object, sketch, video
from credit_app.generation.local.files import (
    MAX_IMAGE_SIDE,
    PROCESSING_MESSAGE,
    check_generation_id,
    open_image,
    write_still,
)
from credit_app.generation.options import Choices, check_options

__all__ = ["LocalProvider"]

log = logging.getLogger(__name__)

_Renderer = Callable[[Image.Image, Choices, random.Random], Image.Image]
_Animator = Callable[[Image.Image, Choices, random.Random], list[Image.Image]]

_STILLS: dict[str, _Renderer] = {
    "interior": redecorate.redecorate_interior,
    "exterior": exterior.redesign_exterior,
    "sketch": sketch.render_sketch,
    "furnish": furnish.furnish,
    "remove": remove_object.remove_object,
}

_ANIMATIONS: dict[str, _Animator] = {
    "video": video.animate,
}


def _parse_choices(feature: str, options: Mapping[str, Any]) -> Choices:
    """Check the options `feature` uses (generation.options.check_options); a missing choice
    takes its default.

    Raises GenerationError for an unknown feature, style, room type or motion, a prompt that is
    not text or too long, and a missing or malformed mask.
    """
    try:
        return check_options(feature, options, fill_defaults=True)
    except ValidationFailed as exc:
        raise GenerationError(exc.message) from None


class LocalProvider:
    """Generates every feature on this machine with Pillow; see the module docstring."""

    name = "local"

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Render `request` into `request.output_dir`.

        Raises GenerationError for an unknown feature, invalid options (style, room type,
        motion, prompt, mask), an unreadable image, or an output that cannot be written.
        """
        check_generation_id(request.generation_id)
        choices = _parse_choices(request.feature, request.options)
        if request.feature not in _STILLS and request.feature not in _ANIMATIONS:
            raise GenerationError(f"The local provider cannot generate {request.feature!r}.")
        rng = random.Random(request.seed)
        if request.feature in _ANIMATIONS:
            image = open_image(request.input_path, video.VIDEO_SOURCE_SIDE)
            frames = self._run(_ANIMATIONS[request.feature], image, choices, rng, request)
            return video.write_animation(frames, request)
        image = open_image(request.input_path, MAX_IMAGE_SIDE)
        output = self._run(_STILLS[request.feature], image, choices, rng, request)
        return write_still(output, request)

    @staticmethod
    def _run(
        render: Callable[[Image.Image, Choices, random.Random], Any],
        image: Image.Image,
        choices: Choices,
        rng: random.Random,
        request: GenerationRequest,
    ) -> Any:
        try:
            return render(image, choices, rng)
        except GenerationError:
            raise
        except MemoryError as exc:
            raise GenerationError(PROCESSING_MESSAGE, retryable=True) from exc
        except (OSError, ValueError) as exc:
            log.exception("local %s generation %s failed", request.feature, request.generation_id)
            raise GenerationError(PROCESSING_MESSAGE) from exc
