"""Furnish a room (feature "furnish"): furniture for the room type drawn in the style's
materials, with soft shadows, on the floor of the lightly restyled photo.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from PIL import Image, ImageDraw, ImageFilter, ImageStat

from credit_app.generation.base import GenerationError
from credit_app.generation.local.imaging import RGB, clamp, mix, shade
from credit_app.generation.local.styles import Furnishings, adjust_for, interior_style, tone
from credit_app.generation.options import Choices

_SUPERSAMPLE = 2
_LAMP_LIGHT: RGB = (250, 236, 200)
_PORCELAIN: RGB = (238, 238, 234)
_PLANT: RGB = (86, 120, 78)


class _Painter:
    """Draws furniture in 'units' around an anchor point on the floor (y grows downward).

    Shapes go onto a supersampled RGBA layer for smooth edges; shadows onto a grey layer.
    """

    def __init__(
        self, size: tuple[int, int], anchor: tuple[float, float], unit: float, mirror: bool
    ) -> None:
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
        return (
            (self.anchor[0] + x * self.unit) * _SUPERSAMPLE,
            (self.anchor[1] + y * self.unit) * _SUPERSAMPLE,
        )

    def _box(self, x0: float, y0: float, x1: float, y1: float) -> list[float]:
        (ax, ay), (bx, by) = self._point(x0, y0), self._point(x1, y1)
        return [min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)]

    def _width(self, units: float) -> int:
        return max(1, round(units * self.unit * _SUPERSAMPLE))

    def box(
        self,
        x0: float,
        y0: float,
        x1: float,
        y1: float,
        fill: RGB,
        radius: float = 0.0,
        alpha: int = 255,
    ) -> None:
        outline = (*shade(fill, 0.75), alpha)
        self._draw.rounded_rectangle(
            self._box(x0, y0, x1, y1),
            radius=self._width(radius),
            fill=(*fill, alpha),
            outline=outline,
            width=self._width(0.15),
        )

    def poly(self, points: Iterable[tuple[float, float]], fill: RGB, alpha: int = 255) -> None:
        self._draw.polygon(
            [self._point(x, y) for x, y in points],
            fill=(*fill, alpha),
            outline=(*shade(fill, 0.75), alpha),
            width=self._width(0.15),
        )

    def ellipse(self, x0: float, y0: float, x1: float, y1: float, fill: RGB) -> None:
        self._draw.ellipse(
            self._box(x0, y0, x1, y1),
            fill=(*fill, 255),
            outline=(*shade(fill, 0.75), 255),
            width=self._width(0.15),
        )

    def line(self, points: Iterable[tuple[float, float]], fill: RGB, width: float) -> None:
        self._draw.line(
            [self._point(x, y) for x, y in points],
            fill=(*fill, 255),
            width=self._width(width),
            joint="curve",
        )

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
    p.poly(
        [(-half_width, near), (half_width, near), (inset, far), (-inset, far)], colour, alpha=235
    )
    border = mix(colour, (255, 255, 255), 0.3)
    p.line(
        [
            (-half_width * 0.9, near - 1.2),
            (half_width * 0.9, near - 1.2),
            (inset * 0.9, far + 1),
            (-inset * 0.9, far + 1),
            (-half_width * 0.9, near - 1.2),
        ],
        border,
        0.4,
    )


def _living_room(p: _Painter, f: Furnishings) -> None:
    up, wood = f.upholstery, f.wood
    _rug(p, f.accent, 40, 15)
    p.shadow(-36, -16, 36, -6)
    p.box(-29, -11, -27, -7.5, shade(wood, 0.8))
    p.box(27, -11, 29, -7.5, shade(wood, 0.8))
    p.box(-29, -36, 29, -21, up, radius=2.5)
    p.box(-27, -33, -1, -22, shade(up, 1.1), radius=2)
    p.box(1, -33, 27, -22, shade(up, 1.1), radius=2)
    p.box(-28, -23, 28, -19, shade(up, 1.05), radius=1.2)
    p.box(-32, -20, 32, -10, shade(up, 0.8), radius=1.2)
    p.box(-24, -30, -15, -22, f.accent, radius=2)
    p.box(15, -30, 24, -22, mix(f.accent, _LAMP_LIGHT, 0.4), radius=2)
    p.box(-34, -28, -27, -10, shade(up, 0.92), radius=2)
    p.box(27, -28, 34, -10, shade(up, 0.92), radius=2)
    p.shadow(-17, -6, 17, 1, 140)
    p.poly([(-15, -4), (15, -4), (12.5, -8), (-12.5, -8)], shade(wood, 1.1))
    p.box(-15, -4, 15, -2.5, shade(wood, 0.8))
    p.box(-14, -2.5, -13, 1, shade(wood, 0.7))
    p.box(13, -2.5, 14, 1, shade(wood, 0.7))
    p.box(-5, -11, -1, -6.5, f.accent, radius=0.8)
    p.shadow(38, -11, 50, -6)
    p.ellipse(40, -11, 48, -8, f.metal)
    p.box(43.6, -52, 44.4, -9.5, f.metal)
    p.poly([(39, -50), (49, -50), (47, -59), (41, -59)], _LAMP_LIGHT)
    p.shadow(-49, -8, -39, -3)
    for x0, y0, x1, y1 in ((-50, -24, -44, -12), (-46, -27, -40, -13), (-48, -20, -38, -11)):
        p.ellipse(x0, y0, x1, y1, _PLANT)
    p.poly([(-47, -5), (-41, -5), (-40, -13), (-48, -13)], shade(wood, 0.9))


def _bedroom(p: _Painter, f: Furnishings) -> None:
    up, wood = f.upholstery, f.wood
    linen = mix(up, (255, 255, 255), 0.55)
    _rug(p, f.accent, 42, 12)
    for side in (-1, 1):
        p.shadow(side * 30, -15, side * 41, -9)
        p.box(side * 30, -28, side * 40, -12, wood, radius=0.6)
        p.line([(side * 31, -20), (side * 39, -20)], shade(wood, 0.7), 0.25)
        p.box(side * 33, -31, side * 37, -28, f.metal)
        p.poly(
            [(side * 31, -31), (side * 39, -31), (side * 37.5, -37), (side * 32.5, -37)],
            _LAMP_LIGHT,
        )
    p.shadow(-32, -12, 32, -1)
    p.box(-27, -48, 27, -24, shade(up, 0.9), radius=2)
    p.poly([(-25, -28), (25, -28), (29, -10), (-29, -10)], linen)
    p.box(-22, -33, -3, -25.5, _PORCELAIN, radius=2.5)
    p.box(3, -33, 22, -25.5, _PORCELAIN, radius=2.5)
    p.poly([(-26.5, -21), (26.5, -21), (27.5, -17), (-27.5, -17)], shade(linen, 0.92))
    p.poly([(-28, -15), (28, -15), (29, -10), (-29, -10)], f.accent)
    p.box(-29, -10, 29, -5, shade(up, 0.75), radius=1)
    p.box(-28, -5, -26, -3, shade(wood, 0.8))
    p.box(26, -5, 28, -3, shade(wood, 0.8))


def _dining_room(p: _Painter, f: Furnishings) -> None:
    up, wood = f.upholstery, f.wood
    _rug(p, f.accent, 44, 18)
    p.line([(0, p.top), (0, -56)], f.metal, 0.3)
    p.ellipse(-1.5, -51.5, 1.5, -48.5, _LAMP_LIGHT)
    p.poly([(-6, -50), (6, -50), (2, -56), (-2, -56)], f.metal)
    for x in (-14, 14):
        p.box(x - 5, -40, x + 5, -25, shade(wood, 0.9), radius=1.5)
    p.shadow(-34, -14, 34, -3)
    p.poly([(-32, -14), (32, -14), (27, -24), (-27, -24)], shade(wood, 1.08))
    p.box(-32, -14, 32, -12, shade(wood, 0.8))
    p.box(-30, -12, -28, 0, shade(wood, 0.85))
    p.box(28, -12, 30, 0, shade(wood, 0.85))
    p.ellipse(-6, -21, 6, -17, f.accent)
    for x in (-16, 16):
        p.shadow(x - 8, -3, x + 8, 2, 140)
        p.box(x - 6, -6, x - 5, 1.5, shade(wood, 0.8))
        p.box(x + 5, -6, x + 6, 1.5, shade(wood, 0.8))
        p.box(x - 7, -9, x + 7, -6, shade(up, 1.05), radius=0.8)
        p.box(x - 6.5, -24, x + 6.5, -9, shade(up, 0.9), radius=1.5)


def _home_office(p: _Painter, f: Furnishings) -> None:
    up, wood, metal = f.upholstery, f.wood, f.metal
    _rug(p, f.accent, 30, 12)
    p.shadow(-49, -9, -35, -3)
    p.box(-48, -62, -36, -6, wood)
    book_colours = (f.accent, up, _LAMP_LIGHT, shade(wood, 0.6), metal)
    for shelf, y in enumerate((-50, -38, -26, -14)):
        p.box(-47, y, -37, y + 1, shade(wood, 0.7))
        for i in range(4):
            colour = book_colours[(shelf + i) % len(book_colours)]
            p.box(-46.5 + i * 2.3, y - 9 + (i % 2), -44.7 + i * 2.3, y, colour)
    p.shadow(-30, -8, 30, -2)
    p.box(-27, -29, -25, -5, metal)
    p.box(15, -29, 27, -5, shade(wood, 0.85))
    p.line([(16, -17), (26, -17)], shade(wood, 0.65), 0.25)
    p.box(-28, -32, 28, -29, shade(wood, 1.08))
    p.box(-1, -38, 1, -32, metal)
    p.box(-5, -33, 5, -32, metal)
    p.box(-12, -50, 12, -37, metal, radius=0.6)
    p.box(-11, -49, 11, -38, (70, 92, 112))
    p.line([(20, -32), (23, -42), (19, -46)], metal, 0.6)
    p.poly([(16, -44), (21, -47), (22, -44.5), (18, -42)], _LAMP_LIGHT)
    p.shadow(-11, -3, 11, 2)
    p.box(-8, -1, 8, 0, metal)
    for x in (-8, 0, 8):
        p.ellipse(x - 1, -0.5, x + 1, 1.5, shade(metal, 0.7))
    p.box(-0.7, -14, 0.7, -1, metal)
    p.box(-9, -17, 9, -13, up, radius=2)
    p.box(-8, -33, 8, -17, shade(up, 0.9), radius=3)


def _kitchen(p: _Painter, f: Furnishings) -> None:
    cabinet = mix(f.wall, f.wood, 0.5)
    stone = mix(f.wall, f.metal, 0.3)
    p.box(-48, -34, 48, -14, cabinet)
    for i in range(8):
        x = -48 + 12 * i
        p.box(x + 0.6, -31.5, x + 11.4, -15, shade(cabinet, 1.05), radius=0.4)
        p.box(x + 5.4, -30, x + 6.6, -29.4, f.metal)
    p.box(-48, -14, 48, -12.5, shade(cabinet, 0.6))
    p.box(-49, -36, 49, -34, stone)
    p.line([(20, -36), (20, -40), (23, -40)], f.metal, 0.6)
    for x in (-12, 12):
        p.line([(x, p.top), (x, -48)], f.metal, 0.25)
        p.poly([(x - 3.5, -44), (x + 3.5, -44), (x + 1.5, -48), (x - 1.5, -48)], _LAMP_LIGHT)
    p.shadow(-30, -6, 30, 4)
    p.box(-27, -14.5, 27, 0, shade(cabinet, 0.85))
    for x in (-18, 0, 18):
        p.line([(x, -13), (x, -1.5)], shade(cabinet, 0.65), 0.2)
    p.poly([(-28, -16), (28, -16), (26, -20), (-26, -20)], shade(stone, 1.05))
    p.box(-28, -16, 28, -14.5, shade(stone, 0.85))
    for x in (-17, 0, 17):
        p.shadow(x - 5, 0, x + 5, 4, 130)
        p.line([(x - 3, -9), (x - 4, 3)], f.metal, 0.5)
        p.line([(x + 3, -9), (x + 4, 3)], f.metal, 0.5)
        p.line([(x - 3.5, -2), (x + 3.5, -2)], f.metal, 0.4)
        p.ellipse(x - 4, -11, x + 4, -8.5, f.upholstery)


def _bathroom(p: _Painter, f: Furnishings) -> None:
    wood, metal = f.wood, f.metal
    stone = mix(f.wall, metal, 0.3)
    p.box(-30, -4, -10, 1, f.accent, radius=1)
    p.shadow(-47, -12, -1, -3)
    p.box(-42, -10, -39, -6, metal)
    p.box(-7, -10, -4, -6, metal)
    p.box(-45, -26, -3, -8, shade(_PORCELAIN, 0.92), radius=4)
    p.ellipse(-46, -30, -2, -22, _PORCELAIN)
    p.ellipse(-43, -29, -5, -23.5, (206, 216, 222))
    p.line([(-42, -28), (-42, -33), (-38, -33)], metal, 0.7)
    p.shadow(6, -10, 40, -3)
    p.box(8, -27, 38, -8, wood, radius=1)
    p.line([(23, -26), (23, -9)], shade(wood, 0.7), 0.25)
    p.box(7, -29, 39, -27, stone)
    p.ellipse(16, -31, 30, -27, _PORCELAIN)
    p.line([(23, -31), (23, -34), (25.5, -34)], metal, 0.6)
    p.box(12, -56, 34, -36, metal, radius=2)
    p.box(13.2, -54.8, 32.8, -37.2, (196, 210, 218), radius=1.5)
    p.box(40, -30, 44, -12, f.accent, radius=0.8)


_ROOM_FURNITURE: dict[str, Callable[[_Painter, Furnishings], None]] = {
    "living_room": _living_room,
    "bedroom": _bedroom,
    "dining_room": _dining_room,
    "home_office": _home_office,
    "kitchen": _kitchen,
    "bathroom": _bathroom,
}


def furnish(image: Image.Image, choices: Choices, rng: random.Random) -> Image.Image:
    """Draw furniture for the room type on the floor of the lightly restyled photo."""
    look, furnishings = interior_style(choices.style)
    draw_furniture = _ROOM_FURNITURE.get(choices.room_type)
    if draw_furniture is None:
        raise GenerationError(f"Furnishing a {choices.room_type} is not available.")
    base = tone(image, look, adjust_for(choices), strength=0.5)
    width, height = base.size
    unit = min(width, height * 1.4) / 115
    anchor = (width * (0.5 + rng.uniform(-0.04, 0.04)), height * rng.uniform(0.88, 0.92))
    painter = _Painter(base.size, anchor, unit, mirror=rng.random() < 0.5)
    draw_furniture(painter, furnishings)
    layer, shadows = painter.finish()
    base = Image.composite(Image.new("RGB", base.size, shade(look.shadow, 0.5)), base, shadows)
    layer = _match_light(layer, base)
    return Image.alpha_composite(base.convert("RGBA"), layer).convert("RGB")


def _match_light(layer: Image.Image, scene: Image.Image) -> Image.Image:
    """Dim the furniture in a dark scene, so it does not glow."""
    width, height = scene.size
    floor = scene.crop((0, height // 2, width, height)).convert("L")
    factor = clamp(0.55 + ImageStat.Stat(floor).mean[0] / 255 * 0.6, 0.7, 1.05)
    lut = [round(clamp(v * factor)) for v in range(256)] * 3 + list(range(256))
    return layer.point(lut)
