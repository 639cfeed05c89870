"""Sketch to rendering (feature "sketch"): a line sketch's closed regions filled with the
style's colours, shaded with soft ambient occlusion and a window light, and the strokes kept
as darker contours.
"""

from __future__ import annotations

import random

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps, ImageStat

from credit_app.generation.local.imaging import add_grain, gray_to_rgb, mix, smoothstep
from credit_app.generation.local.styles import Furnishings, adjust_for, interior_style, tone
from credit_app.generation.options import Choices

_LABEL_SIDE = 160
_MAX_REGIONS = 250


def render_sketch(image: Image.Image, choices: Choices, rng: random.Random) -> Image.Image:
    """Turn a line sketch into a shaded, coloured rendering in the chosen interior style."""
    look, furnishings = interior_style(choices.style)
    ink = _sketch_ink(image)
    colours = _region_colours(ink, furnishings, rng)
    lit = ImageChops.multiply(colours, gray_to_rgb(_sketch_shading(ink, rng)))
    lit = add_grain(lit, rng, 2.5)
    strokes = ink.filter(ImageFilter.GaussianBlur(0.6))
    contours = strokes.point([255 - round(v * 0.6) for v in range(256)])
    rendered = ImageChops.multiply(lit, gray_to_rgb(contours))
    return tone(rendered, look, adjust_for(choices), strength=0.45)


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
    return ImageChops.lighter(
        strokes, ImageOps.invert(gray).point([0 if v < 128 else v for v in range(256)])
    )


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


def _wall_floor_gradient(size: tuple[int, int], furnishings: Furnishings) -> Image.Image:
    """Walls above, floor below, blending around 60% of the height."""
    width, height = size
    ramp = Image.linear_gradient("L").resize((width, height), Image.Resampling.BILINEAR)
    floor_mask = ramp.point([round(255 * smoothstep((v / 255 - 0.5) / 0.2)) for v in range(256)])
    walls = Image.new("RGB", size, furnishings.wall)
    floor = Image.new("RGB", size, furnishings.floor)
    return Image.composite(floor, walls, floor_mask)


def _region_colours(ink: Image.Image, furnishings: Furnishings, rng: random.Random) -> Image.Image:
    """Colour each enclosed region of the sketch: large or room-wide ones stay wall/floor, the
    others get furniture materials (upper ones: windows or decor). Returns a full-size RGB image.
    """
    small = ink.copy()
    small.thumbnail((_LABEL_SIDE, _LABEL_SIDE), Image.Resampling.BOX)
    walls = small.point([0 if v > 40 else 255 for v in range(256)]).filter(ImageFilter.MinFilter(3))
    labels_image, labels = _label_regions(walls)
    base = _wall_floor_gradient(small.size, furnishings)
    painted = base.copy()
    histogram = labels_image.histogram()
    total = small.width * small.height
    window = mix(furnishings.wall, (255, 255, 255), 0.6)
    furniture = (
        furnishings.upholstery,
        furnishings.wood,
        furnishings.accent,
        furnishings.upholstery,
        furnishings.wood,
    )
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
        ink.filter(ImageFilter.GaussianBlur(max(2.0, max(width, height) / 70)))
    )
    occlusion = occlusion.point([255 - round(v * 0.22) for v in range(256)])
    light_x = width * rng.choice((0.25, 0.75))
    light_y = height * 0.25
    radial = Image.radial_gradient("L").resize((2 * width, 2 * height), Image.Resampling.BILINEAR)
    left, top = round(width - light_x), round(height - light_y)
    falloff = radial.crop((left, top, left + width, top + height))
    light = falloff.point([255 - round(v * 0.3) for v in range(256)])
    return ImageChops.multiply(occlusion, light)
