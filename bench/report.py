"""What the benchmarks share in reporting: the percentile they quote and how each one writes
its own section of docs/performance.md."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of `values`, NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def write_section(path: Path, section: str, start: str, end: str) -> None:
    """Replace the section of `path` between the markers `start` and `end` (which `section`
    carries itself) with `section`, or append it; other benchmarks' sections and anything else
    in the file stay as they are."""
    text = path.read_text() if path.exists() else "# Performance\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
