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
