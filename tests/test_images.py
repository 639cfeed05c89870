"""WebP derivatives (generation/images.py) on both storage backends: a folder, and a bucket
on the S3 stand-in (moto's S3 server through boto3)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from credit_app.generation.images import (
    VARIANT_WIDTHS,
    VariantError,
    encode_variant,
    make_variants,
    variant_key,
    widths_for,
)


def stored_image(storage, key: str) -> Image.Image:
    with storage.open(key) as stream:
        image = Image.open(io.BytesIO(stream.read()))
        image.load()
    return image


def test_variant_keys_sit_beside_the_original():
    assert variant_key("12/345/output.png", 640) == "12/345/output-640w.webp"
    assert variant_key("/srv/gen/12/345/input.jpeg", 320) == "/srv/gen/12/345/input-320w.webp"


def test_widths_never_exceed_the_image_but_a_tiny_one_gets_the_smallest():
    assert widths_for(2000) == list(VARIANT_WIDTHS)
    assert widths_for(1000) == [320, 640]
    assert widths_for(100) == [320]


def test_make_variants_stores_webp_copies_of_each_width(storage, tmp_path):
    source = tmp_path / "output.png"
    Image.new("RGB", (1600, 1200), (120, 90, 60)).save(source)
    widths = make_variants(source, "7/31/output.png", storage)
    assert widths == [320, 640, 1280]
    for width in widths:
        image = stored_image(storage, variant_key("7/31/output.png", width))
        assert image.format == "WEBP"
        assert image.size == (width, width * 3 // 4)


def test_make_variants_twice_gives_the_same_objects(storage, tmp_path):
    source = tmp_path / "input.jpg"
    Image.new("RGB", (900, 600), (30, 160, 90)).save(source, "JPEG")
    assert make_variants(source, "7/32/input.jpg", storage) == [320, 640]
    first = stored_image(storage, variant_key("7/32/input.jpg", 640)).tobytes()
    assert make_variants(source, "7/32/input.jpg", storage) == [320, 640]
    assert stored_image(storage, variant_key("7/32/input.jpg", 640)).tobytes() == first


def test_an_animation_gets_stills_of_its_first_frame(storage, tmp_path):
    source = tmp_path / "output.webp"
    frames = [Image.new("RGB", (800, 600), colour) for colour in ((200, 0, 0), (0, 0, 200))]
    frames[0].save(source, "WEBP", save_all=True, append_images=frames[1:], duration=80)
    assert make_variants(source, "7/33/output.webp", storage) == [320, 640]
    red, _green, blue = (
        stored_image(storage, variant_key("7/33/output.webp", 320))
        .convert("RGB")
        .getpixel((10, 10))
    )
    assert red > 150 and blue < 60


def test_a_file_that_is_not_an_image_makes_nothing(storage, tmp_path):
    source = tmp_path / "input.png"
    source.write_bytes(b"not an image at all")
    with pytest.raises(VariantError):
        make_variants(source, "7/34/input.png", storage)


def test_encode_variant_keeps_the_shape_and_never_upscales():
    small = Image.new("RGB", (200, 100), (1, 2, 3))
    assert Image.open(io.BytesIO(encode_variant(small, 640))).size == (200, 100)
    tall = Image.new("RGB", (1000, 2000), (1, 2, 3))
    assert Image.open(io.BytesIO(encode_variant(tall, 320))).size == (320, 640)
