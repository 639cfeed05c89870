"""The import graph reads top-down: the app factory, then the interfaces (the CLI, the web
layer), then the domain, then the platform, then the exception classes. A module may import
its own layer and the layers below it, never one above; this reads every module's imports
with `ast` (including the ones inside functions) and names each upward one.

The stand-in servers in `credit_app.testing` are programs of their own: they may use the
domain's wire formats, and nothing in the app imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.no_db  # no database, no app

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "credit_app"

# Highest first. A module belongs to the first layer with a prefix matching its name.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("factory", ("credit_app",)),
    ("cli", ("credit_app.cli",)),
    ("web", ("credit_app.web",)),
    (
        "domain",
        (
            "credit_app.services",
            "credit_app.billing",
            "credit_app.jobs",
            "credit_app.generation",
            "credit_app.models",
        ),
    ),
    ("platform", ("credit_app.platform",)),
    ("errors", ("credit_app.errors",)),
)
STAND_INS = "credit_app.testing"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    """The index of `module`'s layer in LAYERS (0 is the top); the factory only matches the
    package itself."""
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or (prefix != "credit_app" and module.startswith(prefix + ".")):
                best = index if best is None else best
    if best is None:
        raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")
    return best


def imported_modules(path: Path) -> set[str]:
    """Every credit_app module `path` imports, anywhere in the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if _is_module(candidate):
                    names.add(candidate)
    return {name for name in names if name == "credit_app" or name.startswith("credit_app.")}


def _is_module(dotted: str) -> bool:
    path = PACKAGE_ROOT.parent / Path(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def app_modules() -> list[Path]:
    return sorted(
        path for path in PACKAGE_ROOT.rglob("*.py") if not module_name(path).startswith(STAND_INS)
    )


def test_every_module_belongs_to_a_layer():
    for path in app_modules():
        layer_of(module_name(path))


def test_nothing_imports_a_layer_above_its_own():
    upward = []
    for path in app_modules():
        module = module_name(path)
        own = layer_of(module)
        for imported in sorted(imported_modules(path)):
            if imported.startswith(STAND_INS):
                continue
            if layer_of(imported) < own:
                upward.append(
                    f"{module} ({LAYERS[own][0]}) imports {imported} "
                    f"({LAYERS[layer_of(imported)][0]})"
                )
    assert upward == []


def test_the_app_never_imports_the_stand_ins_at_module_level():
    """The stand-ins are separate servers; the app may name them only inside functions that
    start them for local development."""
    offenders = []
    for path in app_modules():
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = (
                    [alias.name for alias in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                offenders += [
                    f"{module_name(path)} imports {name}"
                    for name in names
                    if name.startswith(STAND_INS)
                ]
    assert offenders == []


def test_the_checker_sees_an_upward_import(tmp_path):
    """The rule itself: a platform module importing the web layer is found."""
    assert layer_of("credit_app.platform.config") > layer_of("credit_app.web.auth")
    assert layer_of("credit_app.errors") > layer_of("credit_app.platform.database")
    assert layer_of("credit_app") == 0
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from credit_app.web import auth\n")
    assert imported_modules(sample) == {"credit_app.web", "credit_app.web.auth"}
