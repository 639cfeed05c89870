"""The worker loads what jobs need before rq forks work horses (jobs.preload_for_work_horses)."""

import subprocess
import sys

from PIL import Image

PROBE = """
import gc
import sys
from pathlib import Path
from credit_app import create_app
from credit_app.jobs import preload_for_work_horses

app = create_app("testing", overrides={
    "GENERATION_PROVIDER": "local", "STORAGE_BACKEND": "s3", "S3_BUCKET": "preload",
    "S3_ENDPOINT_URL": "http://127.0.0.1:9", "S3_REGION": "us-east-1",
    "S3_ACCESS_KEY_ID": "preload", "S3_SECRET_ACCESS_KEY": "preload"})
work = Path(sys.argv[1])
if sys.argv[2] == "preload":
    preload_for_work_horses(app)
print(f"frozen:{gc.get_freeze_count()}")
loaded = set(sys.modules)
from credit_app.generation.base import GenerationRequest
from credit_app.generation.providers import provider_from_config
from credit_app.platform.storage import get_storage
with app.app_context():
    get_storage()
provider = provider_from_config(app.config)
for name in ("room.jpg", "room.png"):
    provider.generate(GenerationRequest(
        generation_id=f"preload-{name[-3:]}", feature="interior", input_path=work / name,
        output_dir=work, options={"room_type": "living_room", "style": "modern",
                                  "prompt": "warm light, oak floors"}))
print("imported:" + ",".join(sorted(set(sys.modules) - loaded)))
"""


def _probe(tmp_path, mode: str) -> tuple[set[str], int]:
    """What a generation (its storage, with S3 configured, and its provider) imports in a
    process that did (or did not) preload: a work horse forked from it would import the same
    again, for every job. Also how many objects the process had frozen out of the garbage
    collector's reach before the generation (gc.get_freeze_count)."""
    Image.new("RGB", (96, 96), (180, 150, 120)).save(tmp_path / "room.jpg")
    Image.new("RGB", (96, 96), (120, 150, 180)).save(tmp_path / "room.png")
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path), mode],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    [imported] = [line for line in lines if line.startswith("imported:")]
    [frozen] = [line for line in lines if line.startswith("frozen:")]
    modules = {name for name in imported.removeprefix("imported:").split(",") if name}
    return modules, int(frozen.removeprefix("frozen:"))


def test_after_the_preload_a_generation_imports_nothing(tmp_path):
    imported, frozen = _probe(tmp_path, "preload")
    assert imported == set()
    assert frozen > 0  # a work horse's full collections skip what the worker loaded


def test_without_it_each_generation_would_import_the_provider_image_plugins_and_boto3(tmp_path):
    loaded, frozen = _probe(tmp_path, "none")
    assert frozen == 0
    assert "credit_app.generation.local" in loaded and "boto3" in loaded
    assert any(name.startswith("PIL.") and name.endswith("ImagePlugin") for name in loaded)
