"""Which provider does the work: the local Pillow one by default, a hosted model API if set."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from credit_app.generation.base import GenerationProvider


def provider_from_config(config: Mapping[str, Any]) -> GenerationProvider:
    """Build the configured provider. Raises ValueError for an unknown or incomplete setting."""
    name = config.get("GENERATION_PROVIDER", "local")
    if name == "local":
        from credit_app.generation.local import LocalProvider

        return LocalProvider()
    if name == "http":
        from credit_app.generation.http_provider import HttpModelProvider

        return HttpModelProvider.from_env_config(config)
    raise ValueError(f"GENERATION_PROVIDER must be 'local' or 'http', got {name!r}")
