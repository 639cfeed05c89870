"""The GenerationProvider interface every provider (local Pillow, hosted model API) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class GenerationError(Exception):
    """The generation could not be produced; `message` is safe to show the user."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class GenerationRequest:
    """One generation to run.

    `input_path` is the user's upload, already checked to be a JPEG, PNG or WebP image.
    `options` holds the feature's validated choices (see credit_app.generation.options):
    room_type, style, prompt, mask (remove: x, y, w, h as fractions 0..1 of the image),
    motion (video). The provider writes its output inside `output_dir`.
    """

    generation_id: str
    feature: str
    input_path: Path
    output_dir: Path
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


@dataclass(frozen=True)
class GenerationResult:
    output_path: Path
    media_type: str
    width: int
    height: int


class GenerationProvider(Protocol):
    name: str

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Produce the output for `request`. Raises GenerationError."""
        ...
