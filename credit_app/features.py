"""The six generation features and what each costs: the one table to change a price."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    key: str
    slug: str
    title: str
    cost: int


FEATURES: dict[str, Feature] = {
    feature.key: feature
    for feature in (
        Feature("interior", "redecorate-room", "Redecorate a room", 1),
        Feature("exterior", "redesign-exterior", "Redesign an exterior", 1),
        Feature("sketch", "sketch-to-reality", "Sketch to reality", 1),
        Feature("furnish", "furnish-empty-space", "Furnish an empty space", 1),
        Feature("remove", "remove-object", "Remove an object", 1),
        Feature("video", "generate-videos", "Generate a video", 1),
    )
}

FEATURE_KEYS: tuple[str, ...] = tuple(FEATURES)

# Ledger rows that are not a generation name their source in `feature_used` instead.
SYSTEM_SOURCES: tuple[str, ...] = (
    "registration", "admin_grant", "refund", "subscription", "adjustment",
)

LEDGER_SOURCES: tuple[str, ...] = FEATURE_KEYS + SYSTEM_SOURCES
