"""The six generation features and what each costs: the one table to change a price."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    key: str
    slug: str
    title: str
    cost: int
    description: str


FEATURES: dict[str, Feature] = {
    feature.key: feature
    for feature in (
        Feature(
            "interior",
            "redecorate-room",
            "Redecorate a room",
            1,
            "Upload a photo of a room and see it in a new style.",
        ),
        Feature(
            "exterior",
            "redesign-exterior",
            "Redesign an exterior",
            1,
            "Give the outside of a house a new look.",
        ),
        Feature(
            "sketch",
            "sketch-to-reality",
            "Sketch to reality",
            1,
            "Turn a hand-drawn sketch into a rendered room.",
        ),
        Feature(
            "furnish",
            "furnish-empty-space",
            "Furnish an empty space",
            1,
            "Stage an empty room with furniture that fits its style.",
        ),
        Feature(
            "remove",
            "remove-object",
            "Remove an object",
            1,
            "Mark something in a photo and make it disappear.",
        ),
        Feature(
            "video",
            "generate-videos",
            "Generate a video",
            1,
            "Make a short camera move through your photo.",
        ),
    )
}

FEATURE_KEYS: tuple[str, ...] = tuple(FEATURES)

# Ledger rows that are not a generation name their source in `feature_used` instead.
SYSTEM_SOURCES: tuple[str, ...] = (
    "registration",
    "admin_grant",
    "refund",
    "subscription",
    "adjustment",
    "pack",
    "pack_refund",
    "refill",
    "expiry",
)

LEDGER_SOURCES: tuple[str, ...] = FEATURE_KEYS + SYSTEM_SOURCES
