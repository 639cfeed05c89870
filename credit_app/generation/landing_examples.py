"""The landing page's before/after examples, made by the local provider from shipped samples.

The inputs are in landing_samples/ beside this module; the outputs are computed (never
committed): at build (`flask media examples` or
`python -m credit_app.generation.landing_examples`) or on the first request that needs them.
They live in `<instance>/landing-examples/<version>/`, where the
version hashes the samples, the options and the provider's code, so a change to any of them
makes new files under new URLs (cached for a year) and every dyno computes the same ones on
its own disk. Making them is atomic (a scratch folder renamed into place), so two processes
racing on the first request both end with the same complete set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from credit_app.generation.base import GenerationRequest
from credit_app.generation.images import encode_variant
from credit_app.generation.local import LocalProvider
from credit_app.platform.config import instance_path

log = logging.getLogger(__name__)

SAMPLES_DIR = Path(__file__).resolve().parent / "landing_samples"
PROVIDER_PACKAGE = Path(__file__).resolve().parent / "local"
EXAMPLE_WIDTHS = (480, 960)


@dataclass(frozen=True)
class Example:
    """One before/after pair: `name` names its files, `sample` the input in SAMPLES_DIR."""

    name: str
    title: str
    caption: str
    feature: str
    sample: str
    options: dict


EXAMPLES: tuple[Example, ...] = (
    Example(
        "living-room-japandi",
        "Redecorate a room",
        "Living room, restyled as Japandi",
        "interior",
        "living-room.jpg",
        {"room_type": "living_room", "style": "japandi", "prompt": "warm and airy"},
    ),
    Example(
        "empty-room-furnished",
        "Furnish an empty space",
        "An empty room, staged as a Scandinavian living room",
        "furnish",
        "empty-room.jpg",
        {"room_type": "living_room", "style": "scandinavian"},
    ),
    Example(
        "house-mediterranean",
        "Redesign an exterior",
        "A house front, made Mediterranean",
        "exterior",
        "house.jpg",
        {"style": "mediterranean"},
    ),
    Example(
        "sketch-rendered",
        "Sketch to reality",
        "A line sketch, rendered as a bedroom",
        "sketch",
        "sketch.png",
        {"room_type": "bedroom", "style": "bohemian"},
    ),
)

_lock = threading.Lock()


def provider_sources() -> list[Path]:
    """The local provider's source files, every module of its package, in a fixed order (not
    its bytecode caches, which differ between machines and Python versions)."""
    return sorted(PROVIDER_PACKAGE.rglob("*.py"))


def examples_version() -> str:
    """A hash of everything the outputs depend on: samples, options and the provider code."""
    digest = hashlib.sha256()
    for source in provider_sources():
        digest.update(source.relative_to(PROVIDER_PACKAGE).as_posix().encode())
        digest.update(source.read_bytes())
    for example in EXAMPLES:
        digest.update(
            json.dumps([example.name, example.feature, example.options], sort_keys=True).encode()
        )
        digest.update((SAMPLES_DIR / example.sample).read_bytes())
    return digest.hexdigest()[:12]


def examples_root(root: Path | None = None) -> Path:
    return (root or instance_path()) / "landing-examples"


def file_name(example: Example, which: str, width: int) -> str:
    """The WebP file of `which` ("before" or "after") at `width` px."""
    return f"{example.name}-{which}-{width}w.webp"


def _build(target: Path) -> None:
    """Run the local provider on each sample and write the WebP sizes into `target`.

    Raises GenerationError when the provider refuses a sample (a broken sample file).
    """
    from PIL import Image

    provider = LocalProvider()
    with tempfile.TemporaryDirectory(prefix="landing-") as workdir:
        for index, example in enumerate(EXAMPLES):
            result = provider.generate(
                GenerationRequest(
                    generation_id=f"landing-{example.name}",
                    feature=example.feature,
                    input_path=SAMPLES_DIR / example.sample,
                    output_dir=Path(workdir) / example.name,
                    options=example.options,
                    seed=index + 1,
                )
            )
            with (
                Image.open(SAMPLES_DIR / example.sample) as before,
                Image.open(result.output_path) as after,
            ):
                pair = {"before": before.convert("RGB"), "after": after.convert("RGB")}
            for which, image in pair.items():
                for width in EXAMPLE_WIDTHS:
                    (target / file_name(example, which, width)).write_bytes(
                        encode_variant(image, width)
                    )


def ensure_examples(root: Path | None = None, force: bool = False) -> Path:
    """The folder holding this version's example images, made first when missing (or when
    `force`). Raises GenerationError (a broken sample), OSError (the disk refused)."""
    folder = examples_root(root) / examples_version()
    if folder.is_dir() and not force:
        return folder
    with _lock:
        if folder.is_dir() and not force:
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
        try:
            _build(scratch)
            if force and folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
            try:
                os.replace(scratch, folder)
            except OSError:
                if not folder.is_dir():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        log.info("made the landing examples in %s", folder)
    return folder


if __name__ == "__main__":
    print(ensure_examples(force=True))
