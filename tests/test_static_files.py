"""Delivery: fingerprinted static URLs with far-future caching, and gzip/brotli compression."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import brotli
from flask import url_for

from credit_app.web.static_files import IMMUTABLE, REVALIDATE, fingerprint


def static_url(app, filename: str) -> str:
    with app.test_request_context():
        return url_for("static", filename=filename)


def test_url_for_adds_the_content_hash(app):
    url = static_url(app, "css/app.css")
    digest = fingerprint(Path(app.static_folder) / "css" / "app.css")
    assert url == f"/static/css/app.css?v={digest}" and len(digest) == 12


def test_a_fingerprinted_file_is_cached_for_a_year(app, client):
    response = client.get(static_url(app, "js/app.js"))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == IMMUTABLE


def test_an_old_or_missing_hash_is_revalidated(client):
    for path in ("/static/js/app.js", "/static/js/app.js?v=000000000000"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == REVALIDATE


def test_a_missing_static_file_is_404(client):
    assert client.get("/static/nothing-here.css").status_code == 404
    assert client.get("/static/../pyproject.toml").status_code == 404


def test_only_a_static_files_own_name_is_remembered(app, client):
    from credit_app.web import static_files

    static_files._static_paths.clear()
    spellings = [f"/static/css/{'x/../' * n}app.css" for n in range(1, 6)]
    assert client.get("/static/css/app.css").status_code == 200
    for path in spellings:
        assert client.get(path).status_code == 200
    assert client.get("/static/nothing-here.css").status_code == 404
    remembered = [name for _, name in static_files._static_paths]
    assert "css/app.css" in remembered
    assert not [name for name in remembered if ".." in name or "nothing" in name], remembered


def test_static_files_are_sent_with_brotli_or_gzip(app, client):
    url = static_url(app, "vendor/htmx.min.js")
    plain = client.get(url).data
    brotli_response = client.get(url, headers={"Accept-Encoding": "br, gzip"})
    assert brotli_response.headers["Content-Encoding"] == "br"
    assert "Accept-Encoding" in brotli_response.headers["Vary"]
    assert brotli.decompress(brotli_response.data) == plain
    assert len(brotli_response.data) < len(plain) / 2
    gzip_response = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert gzip_response.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(gzip_response.data) == plain
    again = client.get(url, headers={"Accept-Encoding": "br"})
    assert again.data == brotli_response.data


def test_pages_are_compressed(client):
    response = client.get("/login", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    html = gzip.decompress(response.data).decode()
    assert "<form" in html
    assert client.get("/login").headers.get("Content-Encoding") is None


def test_pages_have_a_meta_description_and_fingerprinted_assets(client):
    html = client.get("/login").get_data(as_text=True)
    assert re.search(r'<meta name="description" content="[^"]{50,}">', html)
    assert re.search(r'href="/static/css/app.css\?v=[0-9a-f]{12}"', html)
    assert re.search(r'src="/static/js/app.js\?v=[0-9a-f]{12}"', html)


def test_an_answer_too_small_to_compress_is_left_alone(client, user):
    """Under COMPRESS_MIN_SIZE nothing is compressed, so neither is Vary: Accept-Encoding set."""
    from credit_app.services import accounts

    _, token = accounts.create_api_token(user.id, "script")
    headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "br, gzip"}
    response = client.get("/api/user/credits", headers=headers)
    assert response.status_code == 200 and len(response.data) < 500
    assert response.headers.get("Content-Encoding") is None
    assert "Accept-Encoding" not in response.headers.get("Vary", "")
    assert response.json["remaining"] == 6
