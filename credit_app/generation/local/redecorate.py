"""Redecorate a room (feature "interior"): the photo restyled in the chosen interior style
(tone mapping and recolouring), nudged by the room type and the prompt.
"""

from __future__ import annotations

import random

from PIL import Image

from credit_app.generation.local.imaging import add_grain
from credit_app.generation.local.styles import adjust_for, interior_style, tone
from credit_app.generation.options import Choices


def redecorate_interior(image: Image.Image, choices: Choices, rng: random.Random) -> Image.Image:
    """Restyle a room photo in the chosen interior style."""
    look, _ = interior_style(choices.style)
    return add_grain(tone(image, look, adjust_for(choices)), rng, 1.5)
