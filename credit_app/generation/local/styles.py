"""The styles: how each tones a photo (`Look`, `tone`), the materials it draws and colours
with (`Furnishings`), and the small shifts the prompt's words and the room type add
(`Adjust`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from PIL import Image, ImageEnhance, ImageOps

from credit_app.generation.base import GenerationError
from credit_app.generation.local.imaging import RGB, curve_lut, tint_sky, vignette
from credit_app.generation.options import INTERIOR_STYLES, Choices


@dataclass(frozen=True)
class Look:
    """How a style tones a photo: tone curve, palette, enhancements and vignette."""

    shadow: RGB
    mid: RGB
    highlight: RGB
    tint: float  # how far the photo moves toward the palette, 0..1
    gains: tuple[float, float, float]  # per-channel gain: colour temperature
    gamma: float  # < 1 brightens mid-tones
    lift: int  # raised black point, for airy looks
    saturation: float
    contrast: float
    brightness: float
    vignette: float  # 0..1
    sky: RGB | None = None  # exterior: tint for the bright upper part of the photo


@dataclass(frozen=True)
class Furnishings:
    """A style's materials, used to draw furniture and to colour sketches."""

    upholstery: RGB
    wood: RGB
    accent: RGB
    metal: RGB
    wall: RGB
    floor: RGB


_INTERIOR_LOOKS: dict[str, Look] = {
    "modern": Look(
        (30, 32, 36),
        (128, 128, 130),
        (240, 240, 236),
        0.25,
        (1.0, 1.0, 1.01),
        0.97,
        6,
        0.95,
        1.12,
        1.02,
        0.12,
    ),
    "scandinavian": Look(
        (60, 66, 72),
        (170, 172, 170),
        (250, 250, 252),
        0.30,
        (0.98, 1.0, 1.04),
        0.85,
        20,
        0.75,
        0.95,
        1.08,
        0.05,
    ),
    "industrial": Look(
        (20, 18, 16),
        (110, 100, 90),
        (225, 215, 200),
        0.35,
        (1.05, 1.0, 0.93),
        1.15,
        0,
        0.80,
        1.30,
        0.92,
        0.30,
    ),
    "bohemian": Look(
        (50, 25, 20),
        (170, 100, 60),
        (250, 225, 190),
        0.35,
        (1.08, 1.0, 0.90),
        0.95,
        8,
        1.35,
        1.08,
        1.02,
        0.18,
    ),
    "minimalist": Look(
        (70, 70, 70),
        (180, 180, 178),
        (252, 252, 250),
        0.40,
        (1.0, 1.0, 1.0),
        0.90,
        15,
        0.55,
        1.00,
        1.06,
        0.0,
    ),
    "coastal": Look(
        (40, 60, 80),
        (140, 170, 190),
        (245, 250, 252),
        0.35,
        (0.95, 1.0, 1.08),
        0.88,
        18,
        1.00,
        0.98,
        1.07,
        0.06,
    ),
    "mid_century": Look(
        (40, 28, 20),
        (160, 110, 60),
        (245, 230, 200),
        0.30,
        (1.06, 1.0, 0.92),
        1.0,
        5,
        1.15,
        1.10,
        1.0,
        0.20,
    ),
    "japandi": Look(
        (50, 45, 40),
        (160, 145, 125),
        (242, 236, 226),
        0.35,
        (1.03, 1.0, 0.96),
        0.95,
        12,
        0.70,
        0.95,
        1.03,
        0.10,
    ),
}


_FURNISHINGS: dict[str, Furnishings] = {
    "modern": Furnishings(
        (70, 72, 78), (150, 120, 90), (45, 90, 120), (40, 40, 42), (226, 224, 220), (150, 140, 128)
    ),
    "scandinavian": Furnishings(
        (205, 205, 200),
        (214, 186, 150),
        (120, 150, 140),
        (60, 60, 60),
        (244, 244, 242),
        (220, 200, 170),
    ),
    "industrial": Furnishings(
        (120, 70, 40), (90, 65, 45), (160, 60, 40), (45, 45, 48), (140, 90, 70), (95, 90, 85)
    ),
    "bohemian": Furnishings(
        (180, 80, 60),
        (140, 95, 55),
        (60, 110, 100),
        (200, 150, 50),
        (235, 215, 190),
        (170, 120, 80),
    ),
    "minimalist": Furnishings(
        (230, 228, 224),
        (200, 180, 150),
        (30, 30, 30),
        (180, 180, 180),
        (248, 248, 246),
        (225, 220, 212),
    ),
    "coastal": Furnishings(
        (235, 235, 228),
        (200, 180, 150),
        (60, 110, 160),
        (110, 170, 190),
        (240, 246, 248),
        (214, 200, 175),
    ),
    "mid_century": Furnishings(
        (60, 110, 110),
        (150, 90, 45),
        (220, 150, 40),
        (160, 140, 100),
        (236, 226, 206),
        (150, 100, 60),
    ),
    "japandi": Furnishings(
        (200, 190, 175),
        (170, 135, 100),
        (60, 55, 50),
        (120, 125, 105),
        (236, 230, 220),
        (190, 160, 125),
    ),
}


def interior_style(style: str) -> tuple[Look, Furnishings]:
    """The look and materials of an interior style. Raises GenerationError if there are none."""
    if style not in _INTERIOR_LOOKS or style not in _FURNISHINGS:
        raise GenerationError(f"The {INTERIOR_STYLES.get(style, style)} style is not available.")
    return _INTERIOR_LOOKS[style], _FURNISHINGS[style]


@dataclass(frozen=True)
class _Adjust:
    """Small shifts on top of a look, from the prompt and the room type."""

    temperature: float = 0.0
    brightness: float = 0.0
    saturation: float = 0.0

    def __add__(self, other: _Adjust) -> _Adjust:
        return _Adjust(
            self.temperature + other.temperature,
            self.brightness + other.brightness,
            self.saturation + other.saturation,
        )


_PROMPT_WORDS: dict[str, tuple[str, int]] = {
    **dict.fromkeys(("warm", "warmer", "cozy", "cosy", "sunny", "golden"), ("temperature", 1)),
    **dict.fromkeys(("cool", "cooler", "cold", "icy", "crisp"), ("temperature", -1)),
    **dict.fromkeys(("bright", "brighter", "airy", "sunlit"), ("brightness", 1)),
    **dict.fromkeys(("dark", "darker", "moody", "dim", "dramatic"), ("brightness", -1)),
    **dict.fromkeys(
        ("vibrant", "colorful", "colourful", "bold", "vivid", "saturated"), ("saturation", 1)
    ),
    **dict.fromkeys(("muted", "neutral", "calm", "subdued", "desaturated"), ("saturation", -1)),
}

_ROOM_ADJUST: dict[str, _Adjust] = {
    "living_room": _Adjust(),
    "bedroom": _Adjust(temperature=0.5, brightness=-0.3),
    "kitchen": _Adjust(brightness=0.5),
    "bathroom": _Adjust(temperature=-0.5, brightness=0.5),
    "dining_room": _Adjust(temperature=0.3),
    "home_office": _Adjust(temperature=-0.3, brightness=0.3),
}


_PROMPT_WORD = re.compile(r"[a-z]+")


def prompt_adjust(prompt: str) -> _Adjust:
    """Count the prompt's mood words; each axis moves at most two steps either way."""
    totals = {"temperature": 0, "brightness": 0, "saturation": 0}
    for word in _PROMPT_WORD.findall(prompt.lower()):
        if word in _PROMPT_WORDS:
            axis, step = _PROMPT_WORDS[word]
            totals[axis] += step
    return _Adjust(**{axis: float(max(-2, min(2, total))) for axis, total in totals.items()})


def adjust_for(choices: Choices) -> _Adjust:
    return prompt_adjust(choices.prompt) + _ROOM_ADJUST.get(choices.room_type, _Adjust())


def tone(image: Image.Image, look: Look, adjust: _Adjust, strength: float = 1.0) -> Image.Image:
    """Restyle a photo: autocontrast, tone curve, palette, saturation/contrast/brightness, vignette.

    `strength` < 1 blends the result back toward the (autocontrasted) photo.
    """
    base = ImageOps.autocontrast(image, cutoff=1, preserve_tone=True)
    warmth = 0.035 * adjust.temperature
    r_gain, g_gain, b_gain = look.gains
    lut = curve_lut(look.gamma, look.lift, (r_gain * (1 + warmth), g_gain, b_gain * (1 - warmth)))
    toned = base.point(lut)
    painted = ImageOps.colorize(
        toned.convert("L"), black=look.shadow, white=look.highlight, mid=look.mid
    )
    toned = Image.blend(toned, painted, look.tint)
    toned = ImageEnhance.Color(toned).enhance(
        max(0.0, look.saturation * (1 + 0.12 * adjust.saturation))
    )
    toned = ImageEnhance.Contrast(toned).enhance(look.contrast)
    toned = ImageEnhance.Brightness(toned).enhance(look.brightness * (1 + 0.06 * adjust.brightness))
    if look.sky is not None:
        toned = tint_sky(toned, look.sky)
    if look.vignette > 0:
        toned = vignette(toned, look.vignette, look.shadow)
    if strength < 1:
        toned = Image.blend(base, toned, strength)
    return toned
