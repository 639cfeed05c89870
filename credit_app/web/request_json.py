"""Reading a JSON request body with a bound on its nesting, for every view that reads JSON.

Python's JSON parser recurses once per level, so a body like `[[[[...]]]]` nested some
thousands deep raises RecursionError (not a ValueError, so not a 400). Bodies are checked
before parsing: no request of this API nests more than MAX_JSON_DEPTH levels.
"""

from __future__ import annotations

from typing import Any

from flask import request

MAX_JSON_DEPTH = 32


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in the JSON text `raw` (strings skipped)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return raw.count(b"[") + raw.count(b"{")
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def request_json() -> Any | None:
    """The request's parsed JSON body, or None when it is not JSON, not valid, or nested
    deeper than MAX_JSON_DEPTH."""
    if not request.is_json:
        return None
    if json_depth(request.get_data(cache=True)) > MAX_JSON_DEPTH:
        return None
    return request.get_json(silent=True)
