"""Free text from outside, cleaned at the edge: the one rule the API schemas, the HTML forms
and the feature pages apply before anything reaches a service or the database.

Control characters (C0 and C1, NUL included, and DEL), lone UTF-16 surrogates (JSON can
encode them; PostgreSQL and UTF-8 cannot) and the Unicode line and paragraph separators are
removed; a one-line field also turns tabs and line breaks into spaces, a multi-line field
keeps them (as `\\n`). Removing rather than refusing keeps a pasted value usable; identifiers
(a generation id) are refused instead, by the schemas' printable rule, because two
different keys must never clean into one.
"""

from __future__ import annotations

import re

_ALWAYS_REMOVED = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff"
_LINE_REMOVED = re.compile(f"[{_ALWAYS_REMOVED}]")
_LINE_SPACES = re.compile(r"[\t\n\r]+")
_CRLF = re.compile(r"\r\n?")

# What a printable identifier may not contain: control characters (tabs and line breaks
# too) and the line and paragraph separators. Written with escapes, so that the OpenAPI
# document can publish it as a pattern every regex engine reads (lone surrogates, which no
# engine outside Python can name, fail the service's isprintable() check instead).
PRINTABLE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]+$"


def clean_line(value: str) -> str:
    """One line of text: no control characters, whitespace runs of tabs or breaks made one
    space, trimmed."""
    return _LINE_SPACES.sub(" ", _LINE_REMOVED.sub("", value)).strip()


def clean_text(value: str) -> str:
    """Multi-line text: no control characters except tabs and line breaks (`\\n`), trimmed."""
    return _LINE_REMOVED.sub("", _CRLF.sub("\n", value)).strip()
