"""The landing page: real before/after examples made by the local provider, pricing, FAQ."""

from __future__ import annotations

import io
import re
import shutil

from PIL import Image

from credit_app.generation import landing_examples
from credit_app.generation.landing_examples import (
    EXAMPLES,
    ensure_examples,
    examples_version,
    file_name,
    provider_sources,
)


def test_examples_are_computed_from_the_samples(tmp_path):
    folder = ensure_examples(tmp_path)
    assert folder.name == examples_version()
    for example in EXAMPLES:
        before = Image.open(folder / file_name(example, "before", 960)).convert("RGB")
        after = Image.open(folder / file_name(example, "after", 960)).convert("RGB")
        assert before.size == after.size
        assert before.tobytes() != after.tobytes()
    stamp = (folder / file_name(EXAMPLES[0], "after", 480)).stat().st_mtime_ns
    assert ensure_examples(tmp_path) == folder
    assert (folder / file_name(EXAMPLES[0], "after", 480)).stat().st_mtime_ns == stamp


def test_the_version_follows_every_module_of_the_provider(tmp_path, monkeypatch):
    names = {source.name for source in provider_sources()}
    assert {"__init__.py", "styles.py", "furnish.py", "video.py"} <= names
    copy = tmp_path / "local"
    shutil.copytree(
        landing_examples.PROVIDER_PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    monkeypatch.setattr(landing_examples, "PROVIDER_PACKAGE", copy)
    version = examples_version()
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "styles.cpython-311.pyc").write_bytes(b"bytecode")
    assert examples_version() == version
    with (copy / "furnish.py").open("a") as module:
        module.write("\n")
    assert examples_version() != version


def test_the_landing_page_sells(client):
    html = client.get("/").get_data(as_text=True)
    assert html.count("data-compare-range") == len(EXAMPLES)
    for heading in ("Simple pricing", "Questions, answered"):
        assert heading in html
    for question in ("What is a credit?", "What does Pro include?", "How do I cancel?"):
        assert question in html
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "$19 per month" in text and "$190 per year" in text and "Save $38 (16%)" in text
    assert "<footer" in html
    assert re.search(r'<meta name="description" content="[^"]+">', html)


def test_example_images_are_webp_cached_for_a_year(client):
    html = client.get("/").get_data(as_text=True)
    path = re.search(r'src="(/examples/[0-9a-f]{12}/[a-z-]+-after-960w\.webp)"', html).group(1)
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "image/webp"
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert Image.open(io.BytesIO(response.data)).width == 960
    assert client.get(path.replace(examples_version(), "0" * 12)).status_code == 404
    assert client.get(f"/examples/{examples_version()}/nope.webp").status_code == 404


def test_the_examples_command_rebuilds_them(app):
    result = app.test_cli_runner().invoke(args=["media", "examples"])
    assert result.exit_code == 0, result.output
    assert f"Made {len(EXAMPLES)} landing examples in " in result.output
    folder = ensure_examples()
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        file_name(example, which, width)
        for example in EXAMPLES
        for which in ("before", "after")
        for width in (480, 960)
    )
