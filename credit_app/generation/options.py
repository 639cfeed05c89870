"""The choices each feature offers, shared by the forms, the validators and the providers."""

from __future__ import annotations

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
