"""Redesign an exterior (feature "exterior"): a house photo restyled in the chosen exterior
style, its sky tinted, nudged by the prompt.
"""

from __future__ import annotations

import random

from PIL import Image

from credit_app.generation.base import GenerationError
from credit_app.generation.local.imaging import add_grain
from credit_app.generation.local.styles import Look, prompt_adjust, tone
from credit_app.generation.options import Choices

_EXTERIOR_LOOKS: dict[str, Look] = {
    "modern": Look(
        (25, 28, 32),
        (130, 132, 135),
        (240, 242, 244),
        0.25,
        (0.99, 1.0, 1.02),
        0.98,
        4,
        0.95,
        1.15,
        1.02,
        0.12,
        sky=(150, 185, 215),
    ),
    "farmhouse": Look(
        (45, 40, 35),
        (165, 155, 140),
        (250, 246, 238),
        0.30,
        (1.04, 1.0, 0.95),
        0.92,
        12,
        0.90,
        1.02,
        1.05,
        0.10,
        sky=(170, 200, 225),
    ),
    "mediterranean": Look(
        (60, 35, 20),
        (200, 150, 100),
        (252, 240, 220),
        0.30,
        (1.07, 1.0, 0.92),
        0.93,
        10,
        1.25,
        1.08,
        1.05,
        0.15,
        sky=(80, 150, 220),
    ),
    "craftsman": Look(
        (35, 25, 18),
        (140, 110, 75),
        (235, 220, 190),
        0.35,
        (1.06, 1.0, 0.90),
        1.05,
        5,
        1.05,
        1.12,
        0.98,
        0.22,
        sky=(230, 190, 140),
    ),
    "colonial": Look(
        (30, 35, 45),
        (150, 150, 150),
        (248, 248, 245),
        0.25,
        (1.0, 1.0, 1.02),
        0.95,
        8,
        0.90,
        1.10,
        1.03,
        0.12,
        sky=(140, 180, 220),
    ),
    "tropical": Look(
        (20, 45, 35),
        (150, 165, 120),
        (250, 248, 230),
        0.22,
        (1.02, 1.03, 0.97),
        0.94,
        6,
        1.40,
        1.10,
        1.04,
        0.10,
        sky=(70, 180, 210),
    ),
}


def redesign_exterior(image: Image.Image, choices: Choices, rng: random.Random) -> Image.Image:
    """Restyle an exterior photo in the chosen exterior style. Raises GenerationError."""
    look = _EXTERIOR_LOOKS.get(choices.style)
    if look is None:
        raise GenerationError(f"The {choices.style} exterior style is not available.")
    return add_grain(tone(image, look, prompt_adjust(choices.prompt)), rng, 1.5)
