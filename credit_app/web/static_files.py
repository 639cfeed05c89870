"""Static files: fingerprinted URLs with far-future caching, and compressed responses.

`url_for('static', filename=...)` adds `?v=<content hash>`, so a changed file gets a new URL.
A request whose `v` is the file's current hash is cached for a year as immutable; any other
static request (an old or missing hash) is revalidated (`no-cache`). The hash comes from the
file's bytes, so every dyno built from the same slug computes the same URLs without sharing a
disk or a build manifest.

Responses are compressed by flask-compress (brotli, else gzip) for HTML, fragments, JSON, CSS,
JS and SVG; static files are read into memory so they can be compressed too, and the
compressed bytes of each fingerprinted file are kept in memory per process.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Flask, Request, Response, request, send_from_directory
from werkzeug.exceptions import NotFound

FINGERPRINT_LENGTH = 12
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
COMPRESSED_TYPES = [
    "text/html",
    "text/css",
    "text/xml",
    "text/plain",
    "text/javascript",
    "application/javascript",
    "application/json",
    "image/svg+xml",
    "application/xml",
]

_fingerprints: dict[Path, tuple[float, int, str]] = {}


def fingerprint(path: Path) -> str | None:
    """The short content hash of the file at `path` (None when there is no such file);
    recomputed only when its size or modification time changes."""
    try:
        stat = path.stat()
    except OSError:
        return None
    cached = _fingerprints.get(path)
    if cached and cached[:2] == (stat.st_mtime, stat.st_size):
        return cached[2]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:FINGERPRINT_LENGTH]
    _fingerprints[path] = (stat.st_mtime, stat.st_size, digest)
    return digest


_static_paths: dict[tuple[str, str], Path] = {}


def _static_path(app: Flask, filename: str) -> Path | None:
    """The file `filename` names inside the static folder, or None (missing, or outside it).
    Found paths are remembered: a page asks for the same few files on every render, and
    resolving one is several system calls. Only a file's own name is remembered, never a
    missing file or another spelling of a name (`a/../app.css`), so the memory is bounded by
    the static files, whatever names requests send."""
    key = (app.static_folder, filename)
    found = _static_paths.get(key)
    if found is not None and found.is_file():
        return found
    folder = Path(app.static_folder).resolve()
    path = (folder / filename).resolve()
    if not (path.is_relative_to(folder) and path.is_file()):
        return None
    if path == folder / filename:
        _static_paths[key] = path
    return path


def init_static_files(app: Flask) -> None:
    """Fingerprint static URLs, cache them for a year, and compress responses."""
    from flask_compress import Compress

    @app.url_defaults
    def add_fingerprint(endpoint: str, values: dict) -> None:
        if endpoint != "static" or "v" in values or "filename" not in values:
            return
        path = _static_path(app, values["filename"])
        version = fingerprint(path) if path else None
        if version:
            values["v"] = version

    def serve_static(filename: str) -> Response:
        """A static file, read whole (so it can be compressed), with its caching policy."""
        path = _static_path(app, filename)
        if path is None:
            raise NotFound()
        response = send_from_directory(app.static_folder, filename, max_age=0)
        response.direct_passthrough = False
        response.make_sequence()
        immutable = request.args.get("v") == fingerprint(path)
        response.headers["Cache-Control"] = IMMUTABLE if immutable else REVALIDATE
        if immutable:
            response.headers.pop("ETag", None)
        return response

    app.view_functions["static"] = serve_static
    app.config.setdefault("COMPRESS_MIMETYPES", COMPRESSED_TYPES)
    app.config.setdefault("COMPRESS_ALGORITHM", ["br", "gzip"])
    app.config.setdefault("COMPRESS_MIN_SIZE", 500)
    app.config.setdefault("COMPRESS_BR_LEVEL", 5)
    app.config.setdefault("COMPRESS_STREAMS", False)
    app.config.setdefault("COMPRESS_CACHE_BACKEND", StaticCompressionCache)
    app.config.setdefault("COMPRESS_CACHE_KEY", compression_cache_key)
    app.config["COMPRESS_REGISTER"] = False
    compress = Compress(app)
    min_size = app.config["COMPRESS_MIN_SIZE"]

    @app.after_request
    def compress_response(response: Response) -> Response:
        """flask-compress's pass, skipped for a body known to be under COMPRESS_MIN_SIZE (an
        API answer, a small fragment): it would leave the body as it is and only add `Vary:
        Accept-Encoding`, which a response that no Accept-Encoding changes does not need, for
        about 30 calls."""
        length = response.content_length
        if length is not None and length < min_size:
            return response
        return compress.after_request(response)


class StaticCompressionCache:
    """flask-compress's cache, holding only fingerprinted static files (their bytes never
    change under one URL); every other response is compressed afresh. Bounded per process."""

    def __init__(self, max_entries: int = 256) -> None:
        self.entries: dict[str, bytes] = {}
        self.max_entries = max_entries

    def get(self, key: str) -> bytes | None:
        return None if key.endswith(NOT_CACHED) else self.entries.get(key)

    def set(self, key: str, value: bytes) -> None:
        if key.endswith(NOT_CACHED) or key in self.entries:
            return
        if len(self.entries) >= self.max_entries:
            self.entries.pop(next(iter(self.entries)))
        self.entries[key] = value


NOT_CACHED = ";-"


def compression_cache_key(current_request: Request) -> str:
    """The cache key of a fingerprinted static file (path and hash); "-" for anything else."""
    if current_request.endpoint == "static" and current_request.args.get("v"):
        return f"{current_request.path}?v={current_request.args['v']}"
    return "-"
