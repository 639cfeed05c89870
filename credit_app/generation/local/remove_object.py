"""Remove an object (feature "remove"): the marked rectangle filled from its surroundings
(multi-scale diffusion plus matched grain), with a feathered edge.
"""

from __future__ import annotations

import math
import random

from PIL import Image, ImageChops, ImageFilter, ImageStat

from credit_app.generation.base import GenerationError
from credit_app.generation.local.imaging import add_grain
from credit_app.generation.options import Choices


def remove_object(image: Image.Image, choices: Choices, rng: random.Random) -> Image.Image:
    """Fill the marked rectangle from its surroundings. Raises GenerationError."""
    if choices.mask is None:
        raise GenerationError("Mark the area to remove on the photo.")
    width, height = image.size
    x, y, w, h = choices.mask
    left, top = math.floor(x * width), math.floor(y * height)
    right = max(left + 1, min(width, math.ceil((x + w) * width)))
    bottom = max(top + 1, min(height, math.ceil((y + h) * height)))
    pad = max(2, round(max(width, height) * 0.006))
    hole = (
        max(0, left - pad),
        max(0, top - pad),
        min(width, right + pad),
        min(height, bottom + pad),
    )
    if hole == (0, 0, width, height):
        raise GenerationError(
            "The marked area covers the whole photo; leave some of the surroundings unmarked."
        )
    margin = max(hole[2] - hole[0], hole[3] - hole[1]) // 2 + 2 * pad
    crop_box = (
        max(0, hole[0] - margin),
        max(0, hole[1] - margin),
        min(width, hole[2] + margin),
        min(height, hole[3] + margin),
    )
    crop = image.crop(crop_box)
    local_hole = (
        hole[0] - crop_box[0],
        hole[1] - crop_box[1],
        hole[2] - crop_box[0],
        hole[3] - crop_box[1],
    )
    known = Image.new("L", crop.size, 255)
    known.paste(0, local_hole)
    filled = _diffuse_fill(crop, known, local_hole)
    filled = add_grain(filled, rng, _texture_sigma(crop, known))
    feather = ImageChops.invert(known).filter(ImageFilter.GaussianBlur(max(1.0, pad / 3)))
    result = image.copy()
    result.paste(Image.composite(filled, crop, feather), crop_box[:2])
    return result


def _diffuse_fill(
    crop: Image.Image, known: Image.Image, hole: tuple[int, int, int, int]
) -> Image.Image:
    """Fill the hole (where `known` is 0) smoothly from its border, coarse to fine.

    At each scale the hole is repeatedly blurred while the known pixels are put back, starting
    from the coarser scale's answer, so large holes converge in a few passes.
    """
    mean = ImageStat.Stat(crop, mask=known).mean
    seeded = crop.copy()
    seeded.paste(tuple(round(c) for c in mean), hole)
    longest = max(hole[2] - hole[0], hole[3] - hole[1])
    levels = max(0, math.ceil(math.log2(max(1, longest) / 8)))
    current = seeded
    for level in range(levels, -1, -1):
        scale = 2**level
        size = (max(1, round(crop.width / scale)), max(1, round(crop.height / scale)))
        if scale == 1:
            known_colours, known_mask = seeded, known
        else:
            known_colours = seeded.resize(size, Image.Resampling.BOX)
            known_mask = known.resize(size, Image.Resampling.BOX).point(
                [255 if v >= 250 else 0 for v in range(256)]
            )
        start = current.resize(size, Image.Resampling.BILINEAR) if current.size != size else current
        current = Image.composite(known_colours, start, known_mask)
        for _ in range(40 if level == levels else 12):
            current = Image.composite(
                known_colours, current.filter(ImageFilter.BoxBlur(1)), known_mask
            )
    return current


def _texture_sigma(crop: Image.Image, known: Image.Image) -> float:
    """How grainy the surroundings are: the spread of their fine detail."""
    detail = ImageChops.subtract(crop, crop.filter(ImageFilter.GaussianBlur(2)), offset=128)
    spreads = ImageStat.Stat(detail, mask=known).stddev
    return min(12.0, sum(spreads) / len(spreads))
