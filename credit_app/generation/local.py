"""The local provider: real image work with Pillow, so the product runs without a model API.

Every output is a new image computed from the upload (never a canned file):

- interior / exterior: per-style tone mapping and recolouring (curve, palette, saturation,
  contrast, vignette; exterior styles also tint the sky).
- sketch: the sketch's closed regions are filled with style colours, shaded with soft
  ambient occlusion and a window light, and the strokes kept as darker contours.
- furnish: furniture for the room type drawn in the style's colours, with soft shadows, on
  the floor of the (lightly restyled) photo.
- remove: the marked rectangle is filled from its surroundings (multi-scale diffusion plus
  matched grain), with a feathered edge.
- video: a ~2.4 s animated WebP (GIF if Pillow cannot write animated WebP) moving a virtual
  camera over the photo.

The optional prompt nudges the look deterministically: words such as "warm"/"cozy" and
"cool"/"crisp" shift the colour temperature, "bright"/"airy" and "dark"/"moody" the brightness,
"vibrant"/"bold" and "muted"/"calm" the saturation (see _PROMPT_WORDS; negations are not
understood). Outputs depend only on the upload, the options and the request's seed.
"""

from __future__ import annotations

import io
import logging
import math
import os
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import (
    Image,
    ImageChops,
    ImageDraw,
    ImageEnhance,
    ImageFilter,
    ImageOps,
    ImageStat,
    UnidentifiedImageError,
)

from credit_app.errors import ValidationFailed
from credit_app.generation.base import GenerationError, GenerationRequest, GenerationResult
from credit_app.generation.options import INTERIOR_STYLES, Choices, check_options

try:
    from PIL import ImageCms
except ImportError:  # Pillow built without littlecms: colours are used as they are.
    ImageCms = None

log = logging.getLogger(__name__)

RGB = tuple[int, int, int]

MAX_IMAGE_SIDE = 1600
VIDEO_SOURCE_SIDE = 800
VIDEO_SIDE = 640
VIDEO_FRAMES = 30
VIDEO_FRAME_MS = 80
# Play the clip twice, under five seconds, then stop: no endless motion (WCAG 2.2.2).
VIDEO_LOOPS = 2
MAX_INPUT_PIXELS = 40_000_000
MIN_INPUT_SIDE = 16

UNREADABLE_MESSAGE = "The uploaded image could not be read; upload a JPEG, PNG or WebP photo."
PROCESSING_MESSAGE = "The image could not be processed; try another photo."


# --- Options ----------------------------------------------------------------------------------


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


# --- Styles -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Look:
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
class _Furnishings:
    """A style's materials, used to draw furniture and to colour sketches."""

    upholstery: RGB
    wood: RGB
    accent: RGB
    metal: RGB
    wall: RGB
    floor: RGB


_INTERIOR_LOOKS: dict[str, _Look] = {
    "modern": _Look((30, 32, 36), (128, 128, 130), (240, 240, 236), 0.25, (1.0, 1.0, 1.01),
                    0.97, 6, 0.95, 1.12, 1.02, 0.12),
    "scandinavian": _Look((60, 66, 72), (170, 172, 170), (250, 250, 252), 0.30,
                          (0.98, 1.0, 1.04), 0.85, 20, 0.75, 0.95, 1.08, 0.05),
    "industrial": _Look((20, 18, 16), (110, 100, 90), (225, 215, 200), 0.35, (1.05, 1.0, 0.93),
                        1.15, 0, 0.80, 1.30, 0.92, 0.30),
    "bohemian": _Look((50, 25, 20), (170, 100, 60), (250, 225, 190), 0.35, (1.08, 1.0, 0.90),
                      0.95, 8, 1.35, 1.08, 1.02, 0.18),
    "minimalist": _Look((70, 70, 70), (180, 180, 178), (252, 252, 250), 0.40, (1.0, 1.0, 1.0),
                        0.90, 15, 0.55, 1.00, 1.06, 0.0),
    "coastal": _Look((40, 60, 80), (140, 170, 190), (245, 250, 252), 0.35, (0.95, 1.0, 1.08),
                     0.88, 18, 1.00, 0.98, 1.07, 0.06),
    "mid_century": _Look((40, 28, 20), (160, 110, 60), (245, 230, 200), 0.30,
                         (1.06, 1.0, 0.92), 1.0, 5, 1.15, 1.10, 1.0, 0.20),
    "japandi": _Look((50, 45, 40), (160, 145, 125), (242, 236, 226), 0.35, (1.03, 1.0, 0.96),
                     0.95, 12, 0.70, 0.95, 1.03, 0.10),
}

_EXTERIOR_LOOKS: dict[str, _Look] = {
    "modern": _Look((25, 28, 32), (130, 132, 135), (240, 242, 244), 0.25, (0.99, 1.0, 1.02),
                    0.98, 4, 0.95, 1.15, 1.02, 0.12, sky=(150, 185, 215)),
    "farmhouse": _Look((45, 40, 35), (165, 155, 140), (250, 246, 238), 0.30, (1.04, 1.0, 0.95),
                       0.92, 12, 0.90, 1.02, 1.05, 0.10, sky=(170, 200, 225)),
    "mediterranean": _Look((60, 35, 20), (200, 150, 100), (252, 240, 220), 0.30,
                           (1.07, 1.0, 0.92), 0.93, 10, 1.25, 1.08, 1.05, 0.15,
                           sky=(80, 150, 220)),
    "craftsman": _Look((35, 25, 18), (140, 110, 75), (235, 220, 190), 0.35, (1.06, 1.0, 0.90),
                       1.05, 5, 1.05, 1.12, 0.98, 0.22, sky=(230, 190, 140)),
    "colonial": _Look((30, 35, 45), (150, 150, 150), (248, 248, 245), 0.25, (1.0, 1.0, 1.02),
                      0.95, 8, 0.90, 1.10, 1.03, 0.12, sky=(140, 180, 220)),
    "tropical": _Look((20, 45, 35), (150, 165, 120), (250, 248, 230), 0.22, (1.02, 1.03, 0.97),
                      0.94, 6, 1.40, 1.10, 1.04, 0.10, sky=(70, 180, 210)),
}

_FURNISHINGS: dict[str, _Furnishings] = {
    "modern": _Furnishings((70, 72, 78), (150, 120, 90), (45, 90, 120), (40, 40, 42),
                           (226, 224, 220), (150, 140, 128)),
    "scandinavian": _Furnishings((205, 205, 200), (214, 186, 150), (120, 150, 140),
                                 (60, 60, 60), (244, 244, 242), (220, 200, 170)),
    "industrial": _Furnishings((120, 70, 40), (90, 65, 45), (160, 60, 40), (45, 45, 48),
                               (140, 90, 70), (95, 90, 85)),
    "bohemian": _Furnishings((180, 80, 60), (140, 95, 55), (60, 110, 100), (200, 150, 50),
                             (235, 215, 190), (170, 120, 80)),
    "minimalist": _Furnishings((230, 228, 224), (200, 180, 150), (30, 30, 30), (180, 180, 180),
                               (248, 248, 246), (225, 220, 212)),
    "coastal": _Furnishings((235, 235, 228), (200, 180, 150), (60, 110, 160), (110, 170, 190),
                            (240, 246, 248), (214, 200, 175)),
    "mid_century": _Furnishings((60, 110, 110), (150, 90, 45), (220, 150, 40), (160, 140, 100),
                                (236, 226, 206), (150, 100, 60)),
    "japandi": _Furnishings((200, 190, 175), (170, 135, 100), (60, 55, 50), (120, 125, 105),
                            (236, 230, 220), (190, 160, 125)),
}


def _interior_style(style: str) -> tuple[_Look, _Furnishings]:
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
        return _Adjust(self.temperature + other.temperature,
                       self.brightness + other.brightness,
                       self.saturation + other.saturation)


_PROMPT_WORDS: dict[str, tuple[str, int]] = {
    **dict.fromkeys(("warm", "warmer", "cozy", "cosy", "sunny", "golden"), ("temperature", 1)),
    **dict.fromkeys(("cool", "cooler", "cold", "icy", "crisp"), ("temperature", -1)),
    **dict.fromkeys(("bright", "brighter", "airy", "sunlit"), ("brightness", 1)),
    **dict.fromkeys(("dark", "darker", "moody", "dim", "dramatic"), ("brightness", -1)),
    **dict.fromkeys(("vibrant", "colorful", "colourful", "bold", "vivid", "saturated"),
                    ("saturation", 1)),
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


def _prompt_adjust(prompt: str) -> _Adjust:
    """Count the prompt's mood words; each axis moves at most two steps either way."""
    totals = {"temperature": 0, "brightness": 0, "saturation": 0}
    for word in _PROMPT_WORD.findall(prompt.lower()):
        if word in _PROMPT_WORDS:
            axis, step = _PROMPT_WORDS[word]
            totals[axis] += step
    return _Adjust(**{axis: float(max(-2, min(2, total))) for axis, total in totals.items()})


def _adjust_for(choices: Choices) -> _Adjust:
    return _prompt_adjust(choices.prompt) + _ROOM_ADJUST.get(choices.room_type, _Adjust())


# --- Small image helpers ----------------------------------------------------------------------


def _clamp(value: float, low: float = 0.0, high: float = 255.0) -> float:
    return max(low, min(high, value))


def _shade(colour: RGB, factor: float) -> RGB:
    r, g, b = (round(_clamp(channel * factor)) for channel in colour)
    return r, g, b


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    r, g, bl = (round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    return r, g, bl


def _gray_to_rgb(channel: Image.Image) -> Image.Image:
    return Image.merge("RGB", (channel, channel, channel))


def _smoothstep(t: float) -> float:
    t = _clamp(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _curve_lut(gamma: float, lift: int, gains: Sequence[float]) -> list[int]:
    """A per-channel tone curve: raised black point, gamma, then the channel's gain."""
    lut: list[int] = []
    for gain in gains:
        for value in range(256):
            toned = lift + (255 - lift) * (value / 255) ** gamma
            lut.append(round(_clamp(toned * gain)))
    return lut


def _vignette(image: Image.Image, strength: float, colour: RGB) -> Image.Image:
    """Darken the corners toward `colour`; `strength` 0..1 is the amount at the corners."""
    radial = Image.radial_gradient("L").resize(image.size, Image.Resampling.BILINEAR)
    mask = radial.point([round(255 * strength * (v / 255) ** 2) for v in range(256)])
    return Image.composite(Image.new("RGB", image.size, colour), image, mask)


def _grain(size: tuple[int, int], rng: random.Random, sigma: float) -> Image.Image:
    """Seeded monochrome grain centred on 128 with standard deviation about `sigma`."""
    width, height = size
    noise = Image.frombytes("L", size, rng.randbytes(width * height))
    noise = noise.filter(ImageFilter.GaussianBlur(0.6))
    stat = ImageStat.Stat(noise)
    spread = max(stat.stddev[0], 1e-3)
    mean = stat.mean[0]
    return noise.point([round(_clamp(128 + (v - mean) * sigma / spread)) for v in range(256)])


def _add_grain(image: Image.Image, rng: random.Random, sigma: float) -> Image.Image:
    if sigma < 0.5:
        return image
    grain = _gray_to_rgb(_grain(image.size, rng, sigma))
    return ImageChops.add(image, grain, scale=1.0, offset=-128)


def _tone(image: Image.Image, look: _Look, adjust: _Adjust, strength: float = 1.0) -> Image.Image:
    """Restyle a photo: autocontrast, tone curve, palette, saturation/contrast/brightness, vignette.

    `strength` < 1 blends the result back toward the (autocontrasted) photo.
    """
    base = ImageOps.autocontrast(image, cutoff=1, preserve_tone=True)
    warmth = 0.035 * adjust.temperature
    r_gain, g_gain, b_gain = look.gains
    lut = _curve_lut(look.gamma, look.lift, (r_gain * (1 + warmth), g_gain, b_gain * (1 - warmth)))
    toned = base.point(lut)
    painted = ImageOps.colorize(toned.convert("L"), black=look.shadow, white=look.highlight,
                                mid=look.mid)
    toned = Image.blend(toned, painted, look.tint)
    toned = ImageEnhance.Color(toned).enhance(
        max(0.0, look.saturation * (1 + 0.12 * adjust.saturation)))
    toned = ImageEnhance.Contrast(toned).enhance(look.contrast)
    toned = ImageEnhance.Brightness(toned).enhance(
        look.brightness * (1 + 0.06 * adjust.brightness))
    if look.sky is not None:
        toned = _tint_sky(toned, look.sky)
    if look.vignette > 0:
        toned = _vignette(toned, look.vignette, look.shadow)
    if strength < 1:
        toned = Image.blend(base, toned, strength)
    return toned


def _tint_sky(image: Image.Image, sky: RGB) -> Image.Image:
    """Move the bright pixels of the upper half toward the style's sky colour."""
    width, height = image.size
    fade = Image.linear_gradient("L").resize((width, height), Image.Resampling.BILINEAR)
    upper = fade.point([round(255 * (1 - _smoothstep(v / 255 / 0.5))) for v in range(256)])
    bright = image.convert("L").point([round(255 * _smoothstep((v - 140) / 90))
                                       for v in range(256)])
    mask = ImageChops.multiply(upper, bright).point([round(v * 0.3) for v in range(256)])
    tinted = ImageChops.multiply(image, Image.new("RGB", image.size, _shade(sky, 1.15)))
    return Image.composite(tinted, image, mask)


# --- interior / exterior ----------------------------------------------------------------------


def _redecorate_interior(image: Image.Image, choices: Choices, rng: random.Random) -> Image.Image:
    """Restyle a room photo in the chosen interior style."""
    look, _ = _interior_style(choices.style)
    return _add_grain(_tone(image, look, _adjust_for(choices)), rng, 1.5)


def _redesign_exterior(image: Image.Image, choices: Choices, rng: random.Random) -> Image.Image:
    """Restyle an exterior photo in the chosen exterior style. Raises GenerationError."""
    look = _EXTERIOR_LOOKS.get(choices.style)
    if look is None:
        raise GenerationError(f"The {choices.style} exterior style is not available.")
    return _add_grain(_tone(image, look, _prompt_adjust(choices.prompt)), rng, 1.5)


# --- sketch -----------------------------------------------------------------------------------

_LABEL_SIDE = 160
_MAX_REGIONS = 250


def _render_sketch(image: Image.Image, choices: Choices, rng: random.Random) -> Image.Image:
    """Turn a line sketch into a shaded, coloured rendering in the chosen interior style."""
    look, furnishings = _interior_style(choices.style)
    ink = _sketch_ink(image)
    colours = _region_colours(ink, furnishings, rng)
    lit = ImageChops.multiply(colours, _gray_to_rgb(_sketch_shading(ink, rng)))
    lit = _add_grain(lit, rng, 2.5)
    strokes = ink.filter(ImageFilter.GaussianBlur(0.6))
    contours = strokes.point([255 - round(v * 0.6) for v in range(256)])
    rendered = ImageChops.multiply(lit, _gray_to_rgb(contours))
    return _tone(rendered, look, _adjust_for(choices), strength=0.45)


def _sketch_ink(image: Image.Image) -> Image.Image:
    """The sketch's strokes as a grey image: 0 on paper, bright on the lines."""
    gray = image.convert("L")
    if ImageStat.Stat(gray).mean[0] < 110:  # light lines on a dark ground
        gray = ImageOps.invert(gray)
    gray = ImageOps.autocontrast(gray, cutoff=1)
    radius = max(4.0, max(gray.size) / 60)
    paper = gray.filter(ImageFilter.GaussianBlur(radius))
    darker = ImageChops.subtract(paper, gray)
    strokes = darker.point([0 if v < 12 else min(255, (v - 12) * 3) for v in range(256)])
    return ImageChops.lighter(strokes, ImageOps.invert(gray).point(
        [0 if v < 128 else v for v in range(256)]))


def _label_regions(walls: Image.Image) -> tuple[Image.Image, list[int]]:
    """Flood-fill the areas the strokes enclose; `walls` is 0 on strokes, 255 elsewhere.

    Returns the label image (one grey value per region, 0 strokes, 255 unlabelled) and labels.
    """
    labels_image = walls.copy()
    pixels = labels_image.load()
    width, height = labels_image.size
    step = max(2, min(width, height) // 40)
    labels: list[int] = []
    for y in range(step // 2, height, step):
        for x in range(step // 2, width, step):
            if pixels[x, y] == 255:
                label = len(labels) + 1
                ImageDraw.floodfill(labels_image, (x, y), label)
                labels.append(label)
                if len(labels) >= _MAX_REGIONS:
                    return labels_image, labels
    return labels_image, labels


def _wall_floor_gradient(size: tuple[int, int], furnishings: _Furnishings) -> Image.Image:
    """Walls above, floor below, blending around 60% of the height."""
    width, height = size
    ramp = Image.linear_gradient("L").resize((width, height), Image.Resampling.BILINEAR)
    floor_mask = ramp.point([round(255 * _smoothstep((v / 255 - 0.5) / 0.2)) for v in range(256)])
    walls = Image.new("RGB", size, furnishings.wall)
    floor = Image.new("RGB", size, furnishings.floor)
    return Image.composite(floor, walls, floor_mask)


def _region_colours(ink: Image.Image, furnishings: _Furnishings,
                    rng: random.Random) -> Image.Image:
    """Colour each enclosed region of the sketch: large or room-wide ones stay wall/floor, the
    others get furniture materials (upper ones: windows or decor). Returns a full-size RGB image.
    """
    small = ink.copy()
    small.thumbnail((_LABEL_SIDE, _LABEL_SIDE), Image.Resampling.BOX)
    walls = small.point([0 if v > 40 else 255 for v in range(256)]).filter(
        ImageFilter.MinFilter(3))
    labels_image, labels = _label_regions(walls)
    base = _wall_floor_gradient(small.size, furnishings)
    painted = base.copy()
    histogram = labels_image.histogram()
    total = small.width * small.height
    window = _mix(furnishings.wall, (255, 255, 255), 0.6)
    furniture = (furnishings.upholstery, furnishings.wood, furnishings.accent,
                 furnishings.upholstery, furnishings.wood)
    for label in labels:
        area = histogram[label]
        if not total * 0.004 <= area <= total * 0.1:
            continue
        mask = labels_image.point([255 if v == label else 0 for v in range(256)])
        bbox = mask.getbbox()
        if bbox is None or bbox[2] - bbox[0] > small.width * 0.7:
            continue
        centre_y = (bbox[1] + bbox[3]) / 2 / small.height
        if centre_y < 0.35:
            colour = rng.choice((window, furnishings.accent, window))
        else:
            colour = rng.choice(furniture)
        # Grow the region under its strokes, so no wall colour shows between region and line.
        painted.paste(colour, (0, 0, *small.size), mask.filter(ImageFilter.MaxFilter(5)))
    colours = Image.blend(base, painted, 0.85).resize(ink.size, Image.Resampling.BILINEAR)
    return colours.filter(ImageFilter.GaussianBlur(max(1.0, max(ink.size) / 300)))


def _sketch_shading(ink: Image.Image, rng: random.Random) -> Image.Image:
    """Lighting for a sketch: darker near strokes (ambient occlusion) and away from a window."""
    width, height = ink.size
    occlusion = ImageOps.autocontrast(
        ink.filter(ImageFilter.GaussianBlur(max(2.0, max(width, height) / 70))))
    occlusion = occlusion.point([255 - round(v * 0.22) for v in range(256)])
    light_x = width * rng.choice((0.25, 0.75))
    light_y = height * 0.25
    radial = Image.radial_gradient("L").resize((2 * width, 2 * height),
                                               Image.Resampling.BILINEAR)
    left, top = round(width - light_x), round(height - light_y)
    falloff = radial.crop((left, top, left + width, top + height))
    light = falloff.point([255 - round(v * 0.3) for v in range(256)])
    return ImageChops.multiply(occlusion, light)


# --- furnish ----------------------------------------------------------------------------------

_SUPERSAMPLE = 2
_LAMP_LIGHT: RGB = (250, 236, 200)
_PORCELAIN: RGB = (238, 238, 234)
_PLANT: RGB = (86, 120, 78)


class _Painter:
    """Draws furniture in 'units' around an anchor point on the floor (y grows downward).

    Shapes go onto a supersampled RGBA layer for smooth edges; shadows onto a grey layer.
    """

    def __init__(self, size: tuple[int, int], anchor: tuple[float, float], unit: float,
                 mirror: bool) -> None:
        width, height = size
        self.size = size
        self.anchor = anchor
        self.unit = unit
        self.mirror = mirror
        scaled = (width * _SUPERSAMPLE, height * _SUPERSAMPLE)
        self.layer = Image.new("RGBA", scaled, (0, 0, 0, 0))
        self.shadows = Image.new("L", scaled, 0)
        self._draw = ImageDraw.Draw(self.layer)
        self._shadow_draw = ImageDraw.Draw(self.shadows)

    @property
    def top(self) -> float:
        """The image's top edge, in units."""
        return -self.anchor[1] / self.unit

    def _point(self, x: float, y: float) -> tuple[float, float]:
        if self.mirror:
            x = -x
        return ((self.anchor[0] + x * self.unit) * _SUPERSAMPLE,
                (self.anchor[1] + y * self.unit) * _SUPERSAMPLE)

    def _box(self, x0: float, y0: float, x1: float, y1: float) -> list[float]:
        (ax, ay), (bx, by) = self._point(x0, y0), self._point(x1, y1)
        return [min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)]

    def _width(self, units: float) -> int:
        return max(1, round(units * self.unit * _SUPERSAMPLE))

    def box(self, x0: float, y0: float, x1: float, y1: float, fill: RGB,
            radius: float = 0.0, alpha: int = 255) -> None:
        outline = (*_shade(fill, 0.75), alpha)
        self._draw.rounded_rectangle(self._box(x0, y0, x1, y1), radius=self._width(radius),
                                     fill=(*fill, alpha), outline=outline,
                                     width=self._width(0.15))

    def poly(self, points: Iterable[tuple[float, float]], fill: RGB, alpha: int = 255) -> None:
        self._draw.polygon([self._point(x, y) for x, y in points], fill=(*fill, alpha),
                           outline=(*_shade(fill, 0.75), alpha), width=self._width(0.15))

    def ellipse(self, x0: float, y0: float, x1: float, y1: float, fill: RGB) -> None:
        self._draw.ellipse(self._box(x0, y0, x1, y1), fill=(*fill, 255),
                           outline=(*_shade(fill, 0.75), 255), width=self._width(0.15))

    def line(self, points: Iterable[tuple[float, float]], fill: RGB, width: float) -> None:
        self._draw.line([self._point(x, y) for x, y in points], fill=(*fill, 255),
                        width=self._width(width), joint="curve")

    def shadow(self, x0: float, y0: float, x1: float, y1: float, strength: int = 170) -> None:
        self._shadow_draw.ellipse(self._box(x0, y0, x1, y1), fill=strength)

    def finish(self) -> tuple[Image.Image, Image.Image]:
        """The furniture layer and the soft shadow mask, at the image's size."""
        layer = self.layer.resize(self.size, Image.Resampling.LANCZOS)
        shadows = self.shadows.resize(self.size, Image.Resampling.BILINEAR)
        return layer, shadows.filter(ImageFilter.GaussianBlur(max(1.0, self.unit * 1.2)))


def _rug(p: _Painter, colour: RGB, half_width: float, depth: float) -> None:
    near, far = 4.0, 4.0 - depth
    inset = half_width * 0.8
    p.poly([(-half_width, near), (half_width, near), (inset, far), (-inset, far)], colour,
           alpha=235)
    border = _mix(colour, (255, 255, 255), 0.3)
    p.line([(-half_width * 0.9, near - 1.2), (half_width * 0.9, near - 1.2),
            (inset * 0.9, far + 1), (-inset * 0.9, far + 1), (-half_width * 0.9, near - 1.2)],
           border, 0.4)


def _living_room(p: _Painter, f: _Furnishings) -> None:
    up, wood = f.upholstery, f.wood
    _rug(p, f.accent, 40, 15)
    p.shadow(-36, -16, 36, -6)
    p.box(-29, -11, -27, -7.5, _shade(wood, 0.8))
    p.box(27, -11, 29, -7.5, _shade(wood, 0.8))
    p.box(-29, -36, 29, -21, up, radius=2.5)
    p.box(-27, -33, -1, -22, _shade(up, 1.1), radius=2)
    p.box(1, -33, 27, -22, _shade(up, 1.1), radius=2)
    p.box(-28, -23, 28, -19, _shade(up, 1.05), radius=1.2)
    p.box(-32, -20, 32, -10, _shade(up, 0.8), radius=1.2)
    p.box(-24, -30, -15, -22, f.accent, radius=2)
    p.box(15, -30, 24, -22, _mix(f.accent, _LAMP_LIGHT, 0.4), radius=2)
    p.box(-34, -28, -27, -10, _shade(up, 0.92), radius=2)
    p.box(27, -28, 34, -10, _shade(up, 0.92), radius=2)
    p.shadow(-17, -6, 17, 1, 140)
    p.poly([(-15, -4), (15, -4), (12.5, -8), (-12.5, -8)], _shade(wood, 1.1))
    p.box(-15, -4, 15, -2.5, _shade(wood, 0.8))
    p.box(-14, -2.5, -13, 1, _shade(wood, 0.7))
    p.box(13, -2.5, 14, 1, _shade(wood, 0.7))
    p.box(-5, -11, -1, -6.5, f.accent, radius=0.8)
    p.shadow(38, -11, 50, -6)
    p.ellipse(40, -11, 48, -8, f.metal)
    p.box(43.6, -52, 44.4, -9.5, f.metal)
    p.poly([(39, -50), (49, -50), (47, -59), (41, -59)], _LAMP_LIGHT)
    p.shadow(-49, -8, -39, -3)
    for x0, y0, x1, y1 in ((-50, -24, -44, -12), (-46, -27, -40, -13), (-48, -20, -38, -11)):
        p.ellipse(x0, y0, x1, y1, _PLANT)
    p.poly([(-47, -5), (-41, -5), (-40, -13), (-48, -13)], _shade(wood, 0.9))


def _bedroom(p: _Painter, f: _Furnishings) -> None:
    up, wood = f.upholstery, f.wood
    linen = _mix(up, (255, 255, 255), 0.55)
    _rug(p, f.accent, 42, 12)
    for side in (-1, 1):
        p.shadow(side * 30, -15, side * 41, -9)
        p.box(side * 30, -28, side * 40, -12, wood, radius=0.6)
        p.line([(side * 31, -20), (side * 39, -20)], _shade(wood, 0.7), 0.25)
        p.box(side * 33, -31, side * 37, -28, f.metal)
        p.poly([(side * 31, -31), (side * 39, -31), (side * 37.5, -37), (side * 32.5, -37)],
               _LAMP_LIGHT)
    p.shadow(-32, -12, 32, -1)
    p.box(-27, -48, 27, -24, _shade(up, 0.9), radius=2)
    p.poly([(-25, -28), (25, -28), (29, -10), (-29, -10)], linen)
    p.box(-22, -33, -3, -25.5, _PORCELAIN, radius=2.5)
    p.box(3, -33, 22, -25.5, _PORCELAIN, radius=2.5)
    p.poly([(-26.5, -21), (26.5, -21), (27.5, -17), (-27.5, -17)], _shade(linen, 0.92))
    p.poly([(-28, -15), (28, -15), (29, -10), (-29, -10)], f.accent)
    p.box(-29, -10, 29, -5, _shade(up, 0.75), radius=1)
    p.box(-28, -5, -26, -3, _shade(wood, 0.8))
    p.box(26, -5, 28, -3, _shade(wood, 0.8))


def _dining_room(p: _Painter, f: _Furnishings) -> None:
    up, wood = f.upholstery, f.wood
    _rug(p, f.accent, 44, 18)
    p.line([(0, p.top), (0, -56)], f.metal, 0.3)
    p.ellipse(-1.5, -51.5, 1.5, -48.5, _LAMP_LIGHT)
    p.poly([(-6, -50), (6, -50), (2, -56), (-2, -56)], f.metal)
    for x in (-14, 14):
        p.box(x - 5, -40, x + 5, -25, _shade(wood, 0.9), radius=1.5)
    p.shadow(-34, -14, 34, -3)
    p.poly([(-32, -14), (32, -14), (27, -24), (-27, -24)], _shade(wood, 1.08))
    p.box(-32, -14, 32, -12, _shade(wood, 0.8))
    p.box(-30, -12, -28, 0, _shade(wood, 0.85))
    p.box(28, -12, 30, 0, _shade(wood, 0.85))
    p.ellipse(-6, -21, 6, -17, f.accent)
    for x in (-16, 16):
        p.shadow(x - 8, -3, x + 8, 2, 140)
        p.box(x - 6, -6, x - 5, 1.5, _shade(wood, 0.8))
        p.box(x + 5, -6, x + 6, 1.5, _shade(wood, 0.8))
        p.box(x - 7, -9, x + 7, -6, _shade(up, 1.05), radius=0.8)
        p.box(x - 6.5, -24, x + 6.5, -9, _shade(up, 0.9), radius=1.5)


def _home_office(p: _Painter, f: _Furnishings) -> None:
    up, wood, metal = f.upholstery, f.wood, f.metal
    _rug(p, f.accent, 30, 12)
    p.shadow(-49, -9, -35, -3)
    p.box(-48, -62, -36, -6, wood)
    book_colours = (f.accent, up, _LAMP_LIGHT, _shade(wood, 0.6), metal)
    for shelf, y in enumerate((-50, -38, -26, -14)):
        p.box(-47, y, -37, y + 1, _shade(wood, 0.7))
        for i in range(4):
            colour = book_colours[(shelf + i) % len(book_colours)]
            p.box(-46.5 + i * 2.3, y - 9 + (i % 2), -44.7 + i * 2.3, y, colour)
    p.shadow(-30, -8, 30, -2)
    p.box(-27, -29, -25, -5, metal)
    p.box(15, -29, 27, -5, _shade(wood, 0.85))
    p.line([(16, -17), (26, -17)], _shade(wood, 0.65), 0.25)
    p.box(-28, -32, 28, -29, _shade(wood, 1.08))
    p.box(-1, -38, 1, -32, metal)
    p.box(-5, -33, 5, -32, metal)
    p.box(-12, -50, 12, -37, metal, radius=0.6)
    p.box(-11, -49, 11, -38, (70, 92, 112))
    p.line([(20, -32), (23, -42), (19, -46)], metal, 0.6)
    p.poly([(16, -44), (21, -47), (22, -44.5), (18, -42)], _LAMP_LIGHT)
    p.shadow(-11, -3, 11, 2)
    p.box(-8, -1, 8, 0, metal)
    for x in (-8, 0, 8):
        p.ellipse(x - 1, -0.5, x + 1, 1.5, _shade(metal, 0.7))
    p.box(-0.7, -14, 0.7, -1, metal)
    p.box(-9, -17, 9, -13, up, radius=2)
    p.box(-8, -33, 8, -17, _shade(up, 0.9), radius=3)


def _kitchen(p: _Painter, f: _Furnishings) -> None:
    cabinet = _mix(f.wall, f.wood, 0.5)
    stone = _mix(f.wall, f.metal, 0.3)
    p.box(-48, -34, 48, -14, cabinet)
    for i in range(8):
        x = -48 + 12 * i
        p.box(x + 0.6, -31.5, x + 11.4, -15, _shade(cabinet, 1.05), radius=0.4)
        p.box(x + 5.4, -30, x + 6.6, -29.4, f.metal)
    p.box(-48, -14, 48, -12.5, _shade(cabinet, 0.6))
    p.box(-49, -36, 49, -34, stone)
    p.line([(20, -36), (20, -40), (23, -40)], f.metal, 0.6)
    for x in (-12, 12):
        p.line([(x, p.top), (x, -48)], f.metal, 0.25)
        p.poly([(x - 3.5, -44), (x + 3.5, -44), (x + 1.5, -48), (x - 1.5, -48)], _LAMP_LIGHT)
    p.shadow(-30, -6, 30, 4)
    p.box(-27, -14.5, 27, 0, _shade(cabinet, 0.85))
    for x in (-18, 0, 18):
        p.line([(x, -13), (x, -1.5)], _shade(cabinet, 0.65), 0.2)
    p.poly([(-28, -16), (28, -16), (26, -20), (-26, -20)], _shade(stone, 1.05))
    p.box(-28, -16, 28, -14.5, _shade(stone, 0.85))
    for x in (-17, 0, 17):
        p.shadow(x - 5, 0, x + 5, 4, 130)
        p.line([(x - 3, -9), (x - 4, 3)], f.metal, 0.5)
        p.line([(x + 3, -9), (x + 4, 3)], f.metal, 0.5)
        p.line([(x - 3.5, -2), (x + 3.5, -2)], f.metal, 0.4)
        p.ellipse(x - 4, -11, x + 4, -8.5, f.upholstery)


def _bathroom(p: _Painter, f: _Furnishings) -> None:
    wood, metal = f.wood, f.metal
    stone = _mix(f.wall, metal, 0.3)
    p.box(-30, -4, -10, 1, f.accent, radius=1)
    p.shadow(-47, -12, -1, -3)
    p.box(-42, -10, -39, -6, metal)
    p.box(-7, -10, -4, -6, metal)
    p.box(-45, -26, -3, -8, _shade(_PORCELAIN, 0.92), radius=4)
    p.ellipse(-46, -30, -2, -22, _PORCELAIN)
    p.ellipse(-43, -29, -5, -23.5, (206, 216, 222))
    p.line([(-42, -28), (-42, -33), (-38, -33)], metal, 0.7)
    p.shadow(6, -10, 40, -3)
    p.box(8, -27, 38, -8, wood, radius=1)
    p.line([(23, -26), (23, -9)], _shade(wood, 0.7), 0.25)
    p.box(7, -29, 39, -27, stone)
    p.ellipse(16, -31, 30, -27, _PORCELAIN)
    p.line([(23, -31), (23, -34), (25.5, -34)], metal, 0.6)
    p.box(12, -56, 34, -36, metal, radius=2)
    p.box(13.2, -54.8, 32.8, -37.2, (196, 210, 218), radius=1.5)
    p.box(40, -30, 44, -12, f.accent, radius=0.8)


_ROOM_FURNITURE: dict[str, Callable[[_Painter, _Furnishings], None]] = {
    "living_room": _living_room,
    "bedroom": _bedroom,
    "dining_room": _dining_room,
    "home_office": _home_office,
    "kitchen": _kitchen,
    "bathroom": _bathroom,
}


def _furnish(image: Image.Image, choices: Choices, rng: random.Random) -> Image.Image:
    """Draw furniture for the room type on the floor of the lightly restyled photo."""
    look, furnishings = _interior_style(choices.style)
    draw_furniture = _ROOM_FURNITURE.get(choices.room_type)
    if draw_furniture is None:
        raise GenerationError(f"Furnishing a {choices.room_type} is not available.")
    base = _tone(image, look, _adjust_for(choices), strength=0.5)
    width, height = base.size
    unit = min(width, height * 1.4) / 115
    anchor = (width * (0.5 + rng.uniform(-0.04, 0.04)), height * rng.uniform(0.88, 0.92))
    painter = _Painter(base.size, anchor, unit, mirror=rng.random() < 0.5)
    draw_furniture(painter, furnishings)
    layer, shadows = painter.finish()
    base = Image.composite(Image.new("RGB", base.size, _shade(look.shadow, 0.5)), base, shadows)
    layer = _match_light(layer, base)
    return Image.alpha_composite(base.convert("RGBA"), layer).convert("RGB")


def _match_light(layer: Image.Image, scene: Image.Image) -> Image.Image:
    """Dim the furniture in a dark scene, so it does not glow."""
    width, height = scene.size
    floor = scene.crop((0, height // 2, width, height)).convert("L")
    factor = _clamp(0.55 + ImageStat.Stat(floor).mean[0] / 255 * 0.6, 0.7, 1.05)
    lut = [round(_clamp(v * factor)) for v in range(256)] * 3 + list(range(256))
    return layer.point(lut)


# --- remove -----------------------------------------------------------------------------------


def _remove_object(image: Image.Image, choices: Choices, rng: random.Random) -> Image.Image:
    """Fill the marked rectangle from its surroundings. Raises GenerationError."""
    if choices.mask is None:
        raise GenerationError("Mark the area to remove on the photo.")
    width, height = image.size
    x, y, w, h = choices.mask
    left, top = math.floor(x * width), math.floor(y * height)
    right = max(left + 1, min(width, math.ceil((x + w) * width)))
    bottom = max(top + 1, min(height, math.ceil((y + h) * height)))
    pad = max(2, round(max(width, height) * 0.006))
    hole = (max(0, left - pad), max(0, top - pad), min(width, right + pad),
            min(height, bottom + pad))
    if hole == (0, 0, width, height):
        raise GenerationError("The marked area covers the whole photo; "
                              "leave some of the surroundings unmarked.")
    margin = max(hole[2] - hole[0], hole[3] - hole[1]) // 2 + 2 * pad
    crop_box = (max(0, hole[0] - margin), max(0, hole[1] - margin),
                min(width, hole[2] + margin), min(height, hole[3] + margin))
    crop = image.crop(crop_box)
    local_hole = (hole[0] - crop_box[0], hole[1] - crop_box[1],
                  hole[2] - crop_box[0], hole[3] - crop_box[1])
    known = Image.new("L", crop.size, 255)
    known.paste(0, local_hole)
    filled = _diffuse_fill(crop, known, local_hole)
    filled = _add_grain(filled, rng, _texture_sigma(crop, known))
    feather = ImageChops.invert(known).filter(ImageFilter.GaussianBlur(max(1.0, pad / 3)))
    result = image.copy()
    result.paste(Image.composite(filled, crop, feather), crop_box[:2])
    return result


def _diffuse_fill(crop: Image.Image, known: Image.Image,
                  hole: tuple[int, int, int, int]) -> Image.Image:
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
        scale = 2 ** level
        size = (max(1, round(crop.width / scale)), max(1, round(crop.height / scale)))
        if scale == 1:
            known_colours, known_mask = seeded, known
        else:
            known_colours = seeded.resize(size, Image.Resampling.BOX)
            known_mask = known.resize(size, Image.Resampling.BOX).point(
                [255 if v >= 250 else 0 for v in range(256)])
        start = current.resize(size, Image.Resampling.BILINEAR) if current.size != size \
            else current
        current = Image.composite(known_colours, start, known_mask)
        for _ in range(40 if level == levels else 12):
            current = Image.composite(known_colours, current.filter(ImageFilter.BoxBlur(1)),
                                      known_mask)
    return current


def _texture_sigma(crop: Image.Image, known: Image.Image) -> float:
    """How grainy the surroundings are: the spread of their fine detail."""
    detail = ImageChops.subtract(crop, crop.filter(ImageFilter.GaussianBlur(2)), offset=128)
    spreads = ImageStat.Stat(detail, mask=known).stddev
    return min(12.0, sum(spreads) / len(spreads))


# --- video ------------------------------------------------------------------------------------

_ZOOM = 1.22
_PAN_ZOOM = 1.18


def _camera_box(size: tuple[int, int], motion: str,
                t: float) -> tuple[float, float, float, float]:
    """The part of the photo the camera sees at time `t` (0..1, eased) for `motion`."""
    width, height = size
    if motion in ("zoom_in", "zoom_out"):
        progress = t if motion == "zoom_in" else 1 - t
        zoom = 1 + (_ZOOM - 1) * progress
        box_w, box_h = width / zoom, height / zoom
        x0, y0 = (width - box_w) / 2, (height - box_h) / 2
    else:
        box_w, box_h = width / _PAN_ZOOM, height / _PAN_ZOOM
        travel = width - box_w
        x0 = travel * (1 - t) if motion == "pan_left" else travel * t
        y0 = (height - box_h) / 2
    return x0, y0, x0 + box_w, y0 + box_h


def _animate(image: Image.Image, choices: Choices, rng: random.Random) -> list[Image.Image]:
    """The frames of a short camera move over the photo (the seed is not needed)."""
    out_size = _fit(image.size, VIDEO_SIDE)
    frames = []
    for i in range(VIDEO_FRAMES):
        t = _smoothstep(i / (VIDEO_FRAMES - 1))
        box = _camera_box(image.size, choices.motion, t)
        frames.append(image.resize(out_size, Image.Resampling.BICUBIC, box=box))
    return frames


# --- Input and output -------------------------------------------------------------------------


def _open_image(path: Path, max_side: int) -> Image.Image:
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
        image = image.resize(_fit(image.size, max_side), Image.Resampling.LANCZOS)
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
        converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"),
                                              outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image
    return converted if converted is not None else image


def _animated_webp_supported() -> bool:
    Image.init()
    return "WEBP" in Image.SAVE_ALL


def _save(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary file, so a half-written output is never left under `path`."""
    partial = path.with_name(f".{path.name}.part")
    try:
        write(partial)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise GenerationError("The result could not be saved; please try again.",
                              retryable=True) from exc
    except ValueError as exc:
        partial.unlink(missing_ok=True)
        log.exception("could not encode %s", path.name)
        raise GenerationError(PROCESSING_MESSAGE) from exc


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _check_generation_id(generation_id: str) -> None:
    """The id names the output file, so it must be a plain name. Raises GenerationError."""
    if not _PLAIN_NAME.fullmatch(generation_id):
        raise GenerationError("The generation id is not valid.")


def _output_path(request: GenerationRequest, extension: str) -> Path:
    """`<generation_id>.<extension>` inside the output folder. Raises GenerationError."""
    _check_generation_id(request.generation_id)
    try:
        request.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GenerationError("The result could not be saved; please try again.",
                              retryable=True) from exc
    return request.output_dir / f"{request.generation_id}.{extension}"


def _write_still(image: Image.Image, request: GenerationRequest) -> GenerationResult:
    path = _output_path(request, "png")
    _save(path, lambda target: image.save(target, format="PNG", compress_level=6))
    return GenerationResult(path, "image/png", image.width, image.height)


def _write_animation(frames: list[Image.Image], request: GenerationRequest) -> GenerationResult:
    first, rest = frames[0], frames[1:]
    if _animated_webp_supported():
        path, media_type = _output_path(request, "webp"), "image/webp"
        _save(path, lambda target: first.save(
            target, format="WEBP", save_all=True, append_images=rest, duration=VIDEO_FRAME_MS,
            loop=VIDEO_LOOPS, quality=80, method=4))
    else:
        path, media_type = _output_path(request, "gif"), "image/gif"
        _save(path, lambda target: first.save(
            target, format="GIF", save_all=True, append_images=rest, duration=VIDEO_FRAME_MS,
            loop=VIDEO_LOOPS))
    return GenerationResult(path, media_type, first.width, first.height)


_Renderer = Callable[[Image.Image, Choices, random.Random], Image.Image]
_Animator = Callable[[Image.Image, Choices, random.Random], list[Image.Image]]

_STILLS: dict[str, _Renderer] = {
    "interior": _redecorate_interior,
    "exterior": _redesign_exterior,
    "sketch": _render_sketch,
    "furnish": _furnish,
    "remove": _remove_object,
}

_ANIMATIONS: dict[str, _Animator] = {
    "video": _animate,
}


class LocalProvider:
    """Generates every feature on this machine with Pillow; see the module docstring."""

    name = "local"

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Render `request` into `request.output_dir`.

        Raises GenerationError for an unknown feature, invalid options (style, room type,
        motion, prompt, mask), an unreadable image, or an output that cannot be written.
        """
        _check_generation_id(request.generation_id)
        choices = _parse_choices(request.feature, request.options)
        if request.feature not in _STILLS and request.feature not in _ANIMATIONS:
            raise GenerationError(f"The local provider cannot generate {request.feature!r}.")
        rng = random.Random(request.seed)
        if request.feature in _ANIMATIONS:
            image = _open_image(request.input_path, VIDEO_SOURCE_SIDE)
            frames = self._run(_ANIMATIONS[request.feature], image, choices, rng, request)
            return _write_animation(frames, request)
        image = _open_image(request.input_path, MAX_IMAGE_SIDE)
        output = self._run(_STILLS[request.feature], image, choices, rng, request)
        return _write_still(output, request)

    @staticmethod
    def _run(render: Callable[[Image.Image, Choices, random.Random], Any], image: Image.Image,
             choices: Choices, rng: random.Random, request: GenerationRequest) -> Any:
        try:
            return render(image, choices, rng)
        except GenerationError:
            raise
        except MemoryError as exc:
            raise GenerationError(PROCESSING_MESSAGE, retryable=True) from exc
        except (OSError, ValueError) as exc:
            log.exception("local %s generation %s failed", request.feature,
                          request.generation_id)
            raise GenerationError(PROCESSING_MESSAGE) from exc
