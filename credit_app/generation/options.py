"""The choices each feature offers, and the one check of a generation's options, shared by the
forms, the generation service and the providers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from credit_app.errors import UnknownFeature, ValidationFailed

ROOM_TYPES: dict[str, str] = {
    "living_room": "Living room",
    "bedroom": "Bedroom",
    "kitchen": "Kitchen",
    "bathroom": "Bathroom",
    "dining_room": "Dining room",
    "home_office": "Home office",
}

INTERIOR_STYLES: dict[str, str] = {
    "modern": "Modern",
    "scandinavian": "Scandinavian",
    "industrial": "Industrial",
    "bohemian": "Bohemian",
    "minimalist": "Minimalist",
    "coastal": "Coastal",
    "mid_century": "Mid-century",
    "japandi": "Japandi",
}

EXTERIOR_STYLES: dict[str, str] = {
    "modern": "Modern",
    "farmhouse": "Farmhouse",
    "mediterranean": "Mediterranean",
    "craftsman": "Craftsman",
    "colonial": "Colonial",
    "tropical": "Tropical",
}

MOTIONS: dict[str, str] = {
    "zoom_in": "Slow zoom in",
    "zoom_out": "Slow zoom out",
    "pan_left": "Pan left",
    "pan_right": "Pan right",
}

MAX_PROMPT_LENGTH = 500

DEFAULT_STYLE = "modern"
DEFAULT_ROOM_TYPE = "living_room"
DEFAULT_MOTION = "zoom_in"

# The mask is a rectangle of the photo in fractions of its size: at least this wide and high,
# and inside the photo give or take MASK_TOLERANCE (then trimmed to it).
MIN_MASK_SIDE = 0.01
MASK_TOLERANCE = 1e-3
MASK_KEYS: tuple[str, ...] = ("x", "y", "w", "h")
MARK_THE_AREA = "Mark the area to remove on the photo."

# Which inputs each feature's form asks for (besides the image).
FEATURE_INPUTS: dict[str, tuple[str, ...]] = {
    "interior": ("room_type", "style", "prompt"),
    "exterior": ("style", "prompt"),
    "sketch": ("room_type", "style", "prompt"),
    "furnish": ("room_type", "style"),
    "remove": ("mask",),
    "video": ("motion",),
}


def styles_for(feature: str) -> dict[str, str]:
    return EXTERIOR_STYLES if feature == "exterior" else INTERIOR_STYLES


def describe_options(feature: str, options: dict) -> list[str]:
    """The chosen options as a person reads them ("Coastal style", "Living room"), in the
    form's order; the prompt quoted, the mask left out, unknown values shown as they are."""
    labels = {"room_type": ROOM_TYPES, "style": styles_for(feature), "motion": MOTIONS}
    described = []
    for name in FEATURE_INPUTS.get(feature, ()):
        value = options.get(name)
        if not value or name == "mask":
            continue
        if name == "prompt":
            described.append(f"“{value}”")
        elif name == "style":
            described.append(f"{labels[name].get(value, value)} style")
        else:
            described.append(labels[name].get(value, str(value).replace("_", " ").capitalize()))
    return described


@dataclass(frozen=True)
class Choices:
    """A generation's options after `check_options`: what the providers read. An option the
    feature does not take keeps its default."""

    feature: str
    style: str = DEFAULT_STYLE
    room_type: str = DEFAULT_ROOM_TYPE
    prompt: str = ""
    motion: str = DEFAULT_MOTION
    mask: tuple[float, float, float, float] | None = None  # x, y, w, h

    def as_options(self) -> dict[str, Any]:
        """The options as a generation stores them: the ones its feature takes, the mask as
        {"x", "y", "w", "h"}."""
        options: dict[str, Any] = {}
        for name in FEATURE_INPUTS[self.feature]:
            value = getattr(self, name)
            options[name] = dict(zip(MASK_KEYS, value, strict=True)) if name == "mask" else value
        return options


def check_options(feature: str, options: Mapping[str, Any], *, fill_defaults: bool) -> Choices:
    """Check the options `feature` takes (FEATURE_INPUTS); the rest are ignored.

    A style, room type or motion must be one of its list; a missing one is an error, or takes
    its default with `fill_defaults` (a provider reading stored options). The prompt must be
    text of at most MAX_PROMPT_LENGTH characters (missing: ""). The mask is a mapping of x, y,
    w, h, fractions of the photo, marking a rectangle inside it.

    Raises UnknownFeature, ValidationFailed naming the field.
    """
    inputs = FEATURE_INPUTS.get(feature)
    if inputs is None:
        raise UnknownFeature(
            f"Unknown feature {feature!r}; expected one of: {', '.join(FEATURE_INPUTS)}."
        )
    lists = {
        "room_type": (ROOM_TYPES, DEFAULT_ROOM_TYPE, "room type"),
        "style": (styles_for(feature), DEFAULT_STYLE, "style"),
        "motion": (MOTIONS, DEFAULT_MOTION, "camera motion"),
    }
    values: dict[str, Any] = {}
    for name in inputs:
        if name in lists:
            allowed, default, label = lists[name]
            value = options.get(name) or (default if fill_defaults else "")
            if not isinstance(value, str) or value not in allowed:
                raise ValidationFailed(f"Choose a {label} from the list.", field=name)
            values[name] = value
        elif name == "prompt":
            values[name] = _checked_prompt(options.get("prompt") or "")
        elif name == "mask":
            values[name] = _checked_mask(options.get("mask"))
    return Choices(feature, **values)


def _checked_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str):
        raise ValidationFailed("The description must be text.", field="prompt")
    if len(prompt) > MAX_PROMPT_LENGTH:
        raise ValidationFailed(
            f"Keep the description under {MAX_PROMPT_LENGTH} characters.", field="prompt"
        )
    return prompt


def _checked_mask(mask: Any) -> tuple[float, float, float, float]:
    """The mask's x, y, w, h, trimmed to the photo. Raises ValidationFailed."""
    if not isinstance(mask, Mapping):
        raise ValidationFailed(MARK_THE_AREA, field="mask")
    values = []
    for key in MASK_KEYS:
        value = mask.get(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValidationFailed(MARK_THE_AREA, field="mask")
        values.append(float(value))
    x, y, w, h = values
    if w < MIN_MASK_SIDE or h < MIN_MASK_SIDE:
        raise ValidationFailed("Drag across the photo to mark the area to remove.", field="mask")
    if x < 0 or y < 0 or x + w > 1 + MASK_TOLERANCE or y + h > 1 + MASK_TOLERANCE:
        raise ValidationFailed("The marked area must lie inside the photo.", field="mask")
    return x, y, min(w, 1 - x), min(h, 1 - y)
