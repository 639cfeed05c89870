"""The local Pillow provider, on small synthetic photos and sketches built in each test."""

from __future__ import annotations

import io
import itertools
import random
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from credit_app.generation.base import GenerationError, GenerationRequest, GenerationResult
from credit_app.generation.local import LocalProvider, exterior, furnish, styles, video
from credit_app.generation.options import (
    EXTERIOR_STYLES,
    INTERIOR_STYLES,
    MAX_PROMPT_LENGTH,
    MOTIONS,
    ROOM_TYPES,
)

SIZE = (240, 180)
GREY = (128, 128, 128)


# --- Inputs -----------------------------------------------------------------------------------


def room_image(size: tuple[int, int] = SIZE) -> Image.Image:
    """A synthetic room: gradient walls, a darker floor, a window and a cabinet."""
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    horizon = int(height * 0.6)
    for y in range(height):
        if y < horizon:
            colour = (205 - y // 4, 195 - y // 5, 175 - y // 6)
        else:
            colour = (140 - (y - horizon) // 3, 110, 80)
        draw.line([(0, y), (width, y)], fill=colour)
    draw.rectangle([width * 0.1, height * 0.15, width * 0.3, height * 0.45], fill=(230, 240, 250))
    draw.rectangle([width * 0.6, height * 0.5, width * 0.75, height * 0.7], fill=(120, 60, 50))
    return image


def sketch_image(size: tuple[int, int] = SIZE) -> Image.Image:
    """A line sketch: black strokes (floor line, wall corner, window, sofa, table) on white."""
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.line([(0, height * 0.62), (width, height * 0.62)], fill="black", width=2)
    draw.line([(width * 0.25, 0), (width * 0.25, height * 0.62)], fill="black", width=2)
    draw.rectangle(
        [width * 0.05, height * 0.1, width * 0.2, height * 0.4], outline="black", width=2
    )
    draw.rectangle(
        [width * 0.35, height * 0.45, width * 0.7, height * 0.75], outline="black", width=2
    )
    draw.rectangle(
        [width * 0.4, height * 0.3, width * 0.65, height * 0.45], outline="black", width=2
    )
    draw.ellipse(
        [width * 0.75, height * 0.65, width * 0.9, height * 0.85], outline="black", width=2
    )
    return image


def save(image: Image.Image, tmp_path: Path, name: str = "input.png", **params: Any) -> Path:
    path = tmp_path / name
    image.save(path, **params)
    return path


def generate(
    feature: str,
    input_path: Path,
    options: dict[str, Any] | None = None,
    *,
    seed: int = 1,
    generation_id: str = "gen1",
) -> GenerationResult:
    out = input_path.parent / f"out-{generation_id}-{seed}"
    request = GenerationRequest(
        generation_id=generation_id,
        feature=feature,
        input_path=input_path,
        output_dir=out,
        options=options or {},
        seed=seed,
    )
    return LocalProvider().generate(request)


def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel, 0..255."""
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def band(image: Image.Image, top: float, bottom: float) -> Image.Image:
    return image.crop((0, int(image.height * top), image.width, int(image.height * bottom)))


@pytest.fixture
def room(tmp_path: Path) -> Path:
    return save(room_image(), tmp_path, "input.jpg", quality=92)


@pytest.fixture
def sketch(tmp_path: Path) -> Path:
    return save(sketch_image(), tmp_path)


def check_png(result: GenerationResult, size: tuple[int, int] = SIZE) -> Image.Image:
    assert result.output_path.is_file()
    assert result.output_path.name == "gen1.png"
    assert result.media_type == "image/png"
    assert (result.width, result.height) == size
    with Image.open(result.output_path) as image:
        assert image.format == "PNG"
        assert image.mode == "RGB"
        assert image.size == size
        return image.convert("RGB")


# --- interior / exterior ----------------------------------------------------------------------


@pytest.mark.parametrize("style", INTERIOR_STYLES)
def test_interior_restyles_the_photo(room: Path, style: str) -> None:
    output = check_png(generate("interior", room, {"style": style, "room_type": "living_room"}))
    assert mean_difference(output, open_rgb(room)) > 4


def test_interior_styles_each_look_different(room: Path) -> None:
    outputs = {
        style: open_rgb(
            generate("interior", room, {"style": style}, generation_id=style).output_path
        )
        for style in INTERIOR_STYLES
    }
    styles = list(outputs)
    for i, first in enumerate(styles):
        for second in styles[i + 1 :]:
            assert mean_difference(outputs[first], outputs[second]) > 2, (first, second)


def test_interior_styles_have_their_character(room: Path) -> None:
    def output(style: str) -> ImageStat.Stat:
        result = generate("interior", room, {"style": style}, generation_id=style)
        return ImageStat.Stat(open_rgb(result.output_path))

    scandinavian, industrial = output("scandinavian"), output("industrial")
    bohemian, coastal = output("bohemian"), output("coastal")
    assert sum(scandinavian.mean) > sum(industrial.mean) + 60  # bright vs dark
    assert bohemian.mean[0] - bohemian.mean[2] > coastal.mean[0] - coastal.mean[2] + 20  # warm


def test_prompt_words_shift_temperature_and_brightness(room: Path) -> None:
    def stat(prompt: str) -> ImageStat.Stat:
        result = generate(
            "interior",
            room,
            {"style": "modern", "prompt": prompt},
            generation_id=re.sub(r"\W", "_", prompt) or "none",
        )
        return ImageStat.Stat(open_rgb(result.output_path))

    neutral, warm, cool = stat(""), stat("A warm, cozy den"), stat("cool and crisp")
    assert (
        warm.mean[0] - warm.mean[2]
        > neutral.mean[0] - neutral.mean[2]
        > (cool.mean[0] - cool.mean[2])
    )
    assert sum(stat("bright airy loft").mean) > sum(neutral.mean) > sum(stat("dark moody").mean)


def test_room_type_nudges_the_result(room: Path) -> None:
    bedroom = generate(
        "interior", room, {"style": "modern", "room_type": "bedroom"}, generation_id="bedroom"
    )
    kitchen = generate(
        "interior", room, {"style": "modern", "room_type": "kitchen"}, generation_id="kitchen"
    )
    assert mean_difference(open_rgb(bedroom.output_path), open_rgb(kitchen.output_path)) > 1


@pytest.mark.parametrize("style", EXTERIOR_STYLES)
def test_exterior_restyles_the_photo(room: Path, style: str) -> None:
    output = check_png(generate("exterior", room, {"style": style}))
    assert mean_difference(output, open_rgb(room)) > 4


def test_exterior_styles_differ(room: Path) -> None:
    outputs = [
        open_rgb(generate("exterior", room, {"style": style}, generation_id=style).output_path)
        for style in EXTERIOR_STYLES
    ]
    for i, first in enumerate(outputs):
        for second in outputs[i + 1 :]:
            assert mean_difference(first, second) > 2


def test_every_style_has_a_palette() -> None:
    assert set(styles._INTERIOR_LOOKS) == set(INTERIOR_STYLES)
    assert set(styles._FURNISHINGS) == set(INTERIOR_STYLES)
    assert set(exterior._EXTERIOR_LOOKS) == set(EXTERIOR_STYLES)
    assert set(furnish._ROOM_FURNITURE) == set(ROOM_TYPES)


# --- sketch -----------------------------------------------------------------------------------


def test_sketch_becomes_a_coloured_shaded_rendering(sketch: Path) -> None:
    output = check_png(
        generate("sketch", sketch, {"style": "bohemian", "room_type": "living_room"})
    )
    source = open_rgb(sketch)
    assert mean_difference(output, source) > 20
    # Colour: the sketch is black and white, the rendering is not.
    red, green, blue = (ImageStat.Stat(channel).mean[0] for channel in output.split())
    assert max(red, green, blue) - min(red, green, blue) > 15
    # Shading: the paper was flat white, the rendering's lighting varies.
    assert ImageStat.Stat(output.convert("L")).stddev[0] > 15
    # The strokes stay as darker contours: the floor line is darker than just above it.
    y = int(SIZE[1] * 0.62)
    gray = output.convert("L")
    line = ImageStat.Stat(gray.crop((10, y - 1, 50, y + 1))).mean[0]
    above = ImageStat.Stat(gray.crop((10, y - 12, 50, y - 8))).mean[0]
    assert line < above - 15


def test_sketch_styles_differ(sketch: Path) -> None:
    modern = generate("sketch", sketch, {"style": "modern"}, generation_id="modern")
    coastal = generate("sketch", sketch, {"style": "coastal"}, generation_id="coastal")
    assert mean_difference(open_rgb(modern.output_path), open_rgb(coastal.output_path)) > 5


def test_sketch_with_light_lines_on_dark_ground(tmp_path: Path) -> None:
    inverted = ImageChops.invert(sketch_image())
    output = check_png(generate("sketch", save(inverted, tmp_path), {"style": "japandi"}))
    assert ImageStat.Stat(output.convert("L")).mean[0] > 100  # rendered as a lit room


# --- furnish ----------------------------------------------------------------------------------


@pytest.mark.parametrize("room_type", ROOM_TYPES)
def test_furnish_places_furniture_on_the_floor(room: Path, room_type: str) -> None:
    output = check_png(generate("furnish", room, {"style": "scandinavian", "room_type": room_type}))
    source = open_rgb(room)
    top = mean_difference(band(output, 0, 1 / 3), band(source, 0, 1 / 3))
    bottom = mean_difference(band(output, 2 / 3, 1), band(source, 2 / 3, 1))
    assert bottom > top + 10
    assert bottom > 15


def test_furnish_room_types_and_styles_differ(room: Path) -> None:
    def output(style: str, room_type: str) -> Image.Image:
        result = generate(
            "furnish",
            room,
            {"style": style, "room_type": room_type},
            generation_id=f"{style}-{room_type}",
        )
        return open_rgb(result.output_path)

    living = output("modern", "living_room")
    assert mean_difference(living, output("modern", "bedroom")) > 5
    assert mean_difference(living, output("bohemian", "living_room")) > 5


def test_furnish_portrait_photo(tmp_path: Path) -> None:
    portrait = save(room_image((150, 260)), tmp_path)
    output = check_png(generate("furnish", portrait, {"room_type": "bedroom"}), (150, 260))
    assert mean_difference(band(output, 0.7, 1), band(open_rgb(portrait), 0.7, 1)) > 10


# --- remove -----------------------------------------------------------------------------------


def red_square(tmp_path: Path) -> Path:
    image = Image.new("RGB", SIZE, GREY)
    ImageDraw.Draw(image).rectangle([100, 60, 139, 99], fill=(220, 20, 20))
    return save(image, tmp_path)


MASK = {"x": 98 / 240, "y": 58 / 180, "w": 44 / 240, "h": 44 / 180}


def test_remove_fills_the_marked_area_from_its_surroundings(tmp_path: Path) -> None:
    output = check_png(generate("remove", red_square(tmp_path), {"mask": MASK}))
    inside = ImageStat.Stat(output.crop((98, 58, 142, 102))).mean
    for channel, expected in zip(inside, GREY, strict=True):
        assert abs(channel - expected) < 8
    # Far from the mark nothing changed.
    far = output.crop((0, 0, 60, 180))
    assert ImageChops.difference(far, Image.new("RGB", far.size, GREY)).getbbox() is None


def test_remove_leaves_no_hard_rectangle(tmp_path: Path) -> None:
    gradient = Image.linear_gradient("L").resize(SIZE).convert("RGB")
    ImageDraw.Draw(gradient).rectangle([100, 60, 139, 99], fill=(20, 200, 40))
    output = check_png(generate("remove", save(gradient, tmp_path), {"mask": MASK}))
    gray = output.convert("L")
    # Across the mark's left and right edges, neighbouring pixels are close.
    for y in range(62, 98, 6):
        for x in (97, 142):
            assert abs(gray.getpixel((x, y)) - gray.getpixel((x + 1, y))) < 12
    # The fill follows the vertical gradient: darker at the top of the mark than the bottom.
    assert gray.getpixel((120, 64)) < gray.getpixel((120, 96)) - 20


def test_remove_at_the_image_edge(tmp_path: Path) -> None:
    image = Image.new("RGB", SIZE, GREY)
    ImageDraw.Draw(image).rectangle([0, 0, 49, 49], fill=(0, 0, 255))
    output = check_png(
        generate(
            "remove",
            save(image, tmp_path),
            {"mask": {"x": 0, "y": 0, "w": 52 / 240, "h": 52 / 180}},
        )
    )
    inside = ImageStat.Stat(output.crop((0, 0, 50, 50))).mean
    assert all(abs(channel - 128) < 10 for channel in inside)


def test_remove_textured_surroundings_get_texture(tmp_path: Path) -> None:
    noise = Image.frombytes("L", SIZE, random.Random(5).randbytes(SIZE[0] * SIZE[1]))
    noise = noise.convert("RGB")
    ImageDraw.Draw(noise).rectangle([100, 60, 139, 99], fill=(255, 0, 0))
    output = check_png(generate("remove", save(noise, tmp_path), {"mask": MASK}))
    filled = output.crop((104, 64, 136, 96))
    assert ImageStat.Stat(filled.convert("L")).stddev[0] > 3


@pytest.mark.parametrize(
    "mask",
    [
        {"x": 0.9, "y": 0.1, "w": 0.2, "h": 0.2},
        {"x": 0.1, "y": 0.5, "w": 0.2, "h": 0.6},
        {"x": -0.1, "y": 0.1, "w": 0.2, "h": 0.2},
        {"x": 0.1, "y": 0.1, "w": 0, "h": 0.2},
        {"x": 0.1, "y": 0.1, "w": 0.2, "h": -0.1},
        {"x": 0.1, "y": 0.1, "w": 0.2},
        {"x": "a", "y": 0.1, "w": 0.2, "h": 0.2},
        {"x": True, "y": 0.1, "w": 0.2, "h": 0.2},
        {"x": float("nan"), "y": 0.1, "w": 0.2, "h": 0.2},
        {"x": 0, "y": 0, "w": 1, "h": 1},
        None,
        [0.1, 0.1, 0.2, 0.2],
    ],
)
def test_remove_rejects_bad_masks(tmp_path: Path, mask: Any) -> None:
    with pytest.raises(GenerationError) as caught:
        generate("remove", red_square(tmp_path), {"mask": mask})
    assert "area" in caught.value.message


# --- video ------------------------------------------------------------------------------------


def frames_of(path: Path) -> list[Image.Image]:
    frames = []
    with Image.open(path) as image:
        assert image.is_animated
        for index in range(image.n_frames):
            image.seek(index)
            frames.append(image.convert("RGB"))
    return frames


@pytest.mark.parametrize("motion", MOTIONS)
def test_video_is_an_animated_camera_move(room: Path, motion: str) -> None:
    result = generate("video", room, {"motion": motion})
    assert result.output_path.name == "gen1.webp"
    assert result.media_type == "image/webp"
    assert (result.width, result.height) == SIZE
    with Image.open(result.output_path) as image:
        assert image.format == "WEBP"
        assert image.n_frames > 10
        total_ms = 0
        for index in range(image.n_frames):
            image.seek(index)
            image.load()  # WebP frames report their duration once decoded
            total_ms += image.info["duration"]
        assert 1500 <= total_ms <= 4000
    frames = frames_of(result.output_path)
    for before, after in itertools.pairwise(frames):
        assert ImageChops.difference(before, after).getbbox() is not None


def test_video_pans_go_opposite_ways(room: Path) -> None:
    left = frames_of(
        generate("video", room, {"motion": "pan_left"}, generation_id="left").output_path
    )
    right = frames_of(
        generate("video", room, {"motion": "pan_right"}, generation_id="right").output_path
    )
    assert mean_difference(left[0], right[0]) > 3
    # Panning left ends where panning right starts.
    assert mean_difference(left[-1], right[0]) < mean_difference(left[0], right[0])


def test_video_zoom_in_magnifies(tmp_path: Path) -> None:
    image = Image.new("RGB", SIZE, "white")
    ImageDraw.Draw(image).rectangle([100, 70, 139, 109], fill="black")
    frames = frames_of(generate("video", save(image, tmp_path), {"motion": "zoom_in"}).output_path)

    def dark_pixels(frame: Image.Image) -> int:
        return frame.convert("L").point(lambda v: 255 if v < 100 else 0).histogram()[255]

    assert dark_pixels(frames[-1]) > dark_pixels(frames[0]) * 1.3


def test_video_caps_its_size(tmp_path: Path) -> None:
    big = save(room_image((1200, 900)), tmp_path, "input.jpg")
    result = generate("video", big, {"motion": "zoom_out"})
    assert max(result.width, result.height) <= 640
    assert (result.width, result.height) == (640, 480)


def test_video_falls_back_to_gif(room: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video, "_animated_webp_supported", lambda: False)
    result = generate("video", room, {"motion": "pan_right"})
    assert result.output_path.name == "gen1.gif"
    assert result.media_type == "image/gif"
    with Image.open(result.output_path) as image:
        assert image.format == "GIF"
        assert image.n_frames > 10


# --- common -----------------------------------------------------------------------------------

FEATURE_OPTIONS: dict[str, dict[str, Any]] = {
    "interior": {"style": "japandi", "room_type": "bedroom", "prompt": "warm"},
    "exterior": {"style": "craftsman", "prompt": "bright"},
    "sketch": {"style": "mid_century", "room_type": "living_room"},
    "furnish": {"style": "industrial", "room_type": "dining_room"},
    "remove": {"mask": MASK},
    "video": {"motion": "pan_left"},
}


@pytest.mark.parametrize("feature", FEATURE_OPTIONS)
def test_same_seed_same_bytes(room: Path, feature: str) -> None:
    options = FEATURE_OPTIONS[feature]
    first = generate(feature, room, options, seed=42, generation_id="first")
    second = generate(feature, room, options, seed=42, generation_id="second")
    assert first.output_path != second.output_path
    assert first.output_path.read_bytes() == second.output_path.read_bytes()


def test_seed_varies_the_furniture_layout(room: Path) -> None:
    options = FEATURE_OPTIONS["furnish"]
    first = generate("furnish", room, options, seed=1)
    second = generate("furnish", room, options, seed=2)
    assert first.output_path.read_bytes() != second.output_path.read_bytes()


def test_output_never_overwrites_the_input(room: Path) -> None:
    before = room.read_bytes()
    generate("interior", room, {"style": "modern"})
    assert room.read_bytes() == before
    assert not list(room.parent.rglob(".*.part"))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = save(room_image(), tmp_path, "input.jpg", exif=exif)
    result = generate("interior", path, {"style": "modern"})
    assert (result.width, result.height) == (SIZE[1], SIZE[0])


def test_large_photo_is_capped(tmp_path: Path) -> None:
    path = save(room_image((2000, 1000)), tmp_path, "input.jpg")
    result = generate("interior", path, {"style": "coastal"})
    assert (result.width, result.height) == (1600, 800)


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "I;16", "CMYK"])
def test_any_image_mode_is_accepted(tmp_path: Path, mode: str) -> None:
    source = room_image()
    if mode == "I;16":
        image = source.convert("L").convert("I").point(lambda v: v * 256).convert("I;16")
    elif mode == "RGBA":
        image = source.convert("RGBA")
        image.putalpha(Image.linear_gradient("L").resize(SIZE))
    else:
        image = source.convert(mode)
    path = save(image, tmp_path, "input.jpg" if mode == "CMYK" else "input.png")
    output = check_png(generate("interior", path, {"style": "minimalist"}))
    assert ImageStat.Stat(output.convert("L")).stddev[0] > 10


def test_missing_options_take_defaults(room: Path) -> None:
    check_png(generate("interior", room, {}))


def png_claiming_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = 8  # the IHDR chunk follows the signature: length, type, data, crc
    body = struct.pack(">II", width, height) + bytes(data[ihdr + 16 : ihdr + 21])
    data[ihdr + 8 : ihdr + 21] = body
    data[ihdr + 21 : ihdr + 25] = struct.pack(">I", zlib.crc32(b"IHDR" + body))
    return bytes(data)


UNREADABLE = "The uploaded image could not be read; upload a JPEG, PNG or WebP photo."
TOO_MANY_PIXELS = "The photo has too many pixels (40 megapixels at most)."


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01garbage bytes\xff" * 20, UNREADABLE),
        (b"just some text, not an image\n", UNREADABLE),
        (b"", UNREADABLE),
        (png_claiming_size(20_000, 20_000), TOO_MANY_PIXELS),
        (png_claiming_size(400, 300), UNREADABLE),
    ],
)
def test_unreadable_images_are_generation_errors(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "input.png"
    path.write_bytes(content)
    with pytest.raises(GenerationError) as caught:
        generate("interior", path, {"style": "modern"})
    assert caught.value.message == message
    assert not list(tmp_path.rglob("gen1.*"))


def test_truncated_jpeg_is_a_generation_error(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    room_image().save(buffer, format="JPEG")
    path = tmp_path / "input.jpg"
    path.write_bytes(buffer.getvalue()[:200])
    with pytest.raises(GenerationError):
        generate("interior", path, {"style": "modern"})


def test_missing_input_is_a_generation_error(tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match="missing"):
        generate("interior", tmp_path / "nope.png", {"style": "modern"})


def test_tiny_image_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match="too small"):
        generate("interior", save(Image.new("RGB", (8, 8)), tmp_path), {"style": "modern"})


@pytest.mark.parametrize(
    ("feature", "options", "word"),
    [
        ("interior", {"style": "gothic"}, "style"),
        ("interior", {"style": "farmhouse"}, "style"),  # an exterior style
        ("exterior", {"style": "japandi"}, "style"),  # an interior style
        ("interior", {"style": "modern", "room_type": "garage"}, "room type"),
        ("furnish", {"style": "modern", "room_type": 3}, "room type"),
        ("sketch", {"style": ["modern"]}, "style"),
        ("video", {"motion": "spin"}, "motion"),
        ("interior", {"style": "modern", "prompt": "x" * (MAX_PROMPT_LENGTH + 1)}, "description"),
        ("interior", {"style": "modern", "prompt": 12}, "description"),
        ("paint", {}, "feature"),
    ],
)
def test_bad_options_are_generation_errors(
    room: Path, feature: str, options: dict[str, Any], word: str
) -> None:
    with pytest.raises(GenerationError) as caught:
        generate(feature, room, options)
    assert word in caught.value.message.lower()
    assert not caught.value.retryable


@pytest.mark.parametrize("generation_id", ["", "../escape", "a/b", "x" * 200])
def test_bad_generation_id_is_rejected(room: Path, generation_id: str) -> None:
    with pytest.raises(GenerationError):
        generate("interior", room, {"style": "modern"}, generation_id=generation_id)


def test_provider_name() -> None:
    assert LocalProvider.name == "local"
