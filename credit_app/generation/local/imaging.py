"""Small image helpers the local provider's tools share: colour arithmetic, easing,
sizes, tone curves, vignette and grain.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from PIL import Image, ImageChops, ImageFilter, ImageStat

RGB = tuple[int, int, int]


def clamp(value: float, low: float = 0.0, high: float = 255.0) -> float:
    return max(low, min(high, value))


def shade(colour: RGB, factor: float) -> RGB:
    r, g, b = (round(clamp(channel * factor)) for channel in colour)
    return r, g, b


def mix(a: RGB, b: RGB, t: float) -> RGB:
    r, g, bl = (round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    return r, g, bl


def gray_to_rgb(channel: Image.Image) -> Image.Image:
    return Image.merge("RGB", (channel, channel, channel))


def smoothstep(t: float) -> float:
    t = clamp(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def curve_lut(gamma: float, lift: int, gains: Sequence[float]) -> list[int]:
    """A per-channel tone curve: raised black point, gamma, then the channel's gain."""
    lut: list[int] = []
    for gain in gains:
        for value in range(256):
            toned = lift + (255 - lift) * (value / 255) ** gamma
            lut.append(round(clamp(toned * gain)))
    return lut


def vignette(image: Image.Image, strength: float, colour: RGB) -> Image.Image:
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
    return noise.point([round(clamp(128 + (v - mean) * sigma / spread)) for v in range(256)])


def add_grain(image: Image.Image, rng: random.Random, sigma: float) -> Image.Image:
    if sigma < 0.5:
        return image
    grain = gray_to_rgb(_grain(image.size, rng, sigma))
    return ImageChops.add(image, grain, scale=1.0, offset=-128)


def tint_sky(image: Image.Image, sky: RGB) -> Image.Image:
    """Move the bright pixels of the upper half toward the style's sky colour."""
    width, height = image.size
    fade = Image.linear_gradient("L").resize((width, height), Image.Resampling.BILINEAR)
    upper = fade.point([round(255 * (1 - smoothstep(v / 255 / 0.5))) for v in range(256)])
    bright = image.convert("L").point([round(255 * smoothstep((v - 140) / 90)) for v in range(256)])
    mask = ImageChops.multiply(upper, bright).point([round(v * 0.3) for v in range(256)])
    tinted = ImageChops.multiply(image, Image.new("RGB", image.size, shade(sky, 1.15)))
    return Image.composite(tinted, image, mask)
