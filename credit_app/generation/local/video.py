"""A short video (feature "video"): a ~2.4 s camera move over the photo (a zoom or a pan),
written as an animated WebP (a GIF where Pillow cannot write animated WebP) that plays twice
and stops.
"""

from __future__ import annotations

import random
from typing import Any

from PIL import Image

from credit_app.generation.base import GenerationRequest, GenerationResult
from credit_app.generation.local.files import output_path, save
from credit_app.generation.local.imaging import fit, smoothstep
from credit_app.generation.options import Choices

VIDEO_SOURCE_SIDE = 800
VIDEO_SIDE = 640
VIDEO_FRAMES = 30
VIDEO_FRAME_MS = 80
# Play the clip twice, under five seconds, then stop: no endless motion (WCAG 2.2.2).
VIDEO_LOOPS = 2

_ZOOM = 1.22
_PAN_ZOOM = 1.18


def _camera_box(size: tuple[int, int], motion: str, t: float) -> tuple[float, float, float, float]:
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


def animate(image: Image.Image, choices: Choices, rng: random.Random) -> list[Image.Image]:
    """The frames of a short camera move over the photo (the seed is not needed)."""
    out_size = fit(image.size, VIDEO_SIDE)
    frames = []
    for i in range(VIDEO_FRAMES):
        t = smoothstep(i / (VIDEO_FRAMES - 1))
        box = _camera_box(image.size, choices.motion, t)
        frames.append(image.resize(out_size, Image.Resampling.BICUBIC, box=box))
    return frames


def _animated_webp_supported() -> bool:
    Image.init()
    return "WEBP" in Image.SAVE_ALL


def write_animation(frames: list[Image.Image], request: GenerationRequest) -> GenerationResult:
    first, rest = frames[0], frames[1:]
    if _animated_webp_supported():
        extension, media_type = "webp", "image/webp"
        options: dict[str, Any] = {"format": "WEBP", "quality": 80, "method": 4}
    else:
        extension, media_type, options = "gif", "image/gif", {"format": "GIF"}
    path = output_path(request, extension)
    save(
        path,
        lambda target: first.save(
            target,
            save_all=True,
            append_images=rest,
            duration=VIDEO_FRAME_MS,
            loop=VIDEO_LOOPS,
            **options,
        ),
    )
    return GenerationResult(path, media_type, first.width, first.height)
