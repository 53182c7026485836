"""The hub's imports run down its layers (docs/architecture.md): no module imports from a layer
above its own. Every module's imports are read from its source (``ast``), those inside
functions included, so a lazy import cannot hide an upward one."""

from __future__ import annotations

import ast
from pathlib import Path

import agentops_server

ROOT = Path(agentops_server.__file__).parent
PACKAGE = "agentops_server"

LAYERS: list[tuple[str, ...]] = [
    ("settings", "refusals", "slugs"),
    ("db",),
    ("security", "values"),
    ("backends",),
    ("services",),
    ("auth",),
    ("api",),
    ("web",),
    (
        "observability",
        "app",
        "cli",
        "pricing_cli",
        "analytics_cli",
        "demo",
        "demo_seed",
        "__init__",
        "__main__",
    ),
]
"""Bottom first: a module may import from its own layer and those below, never from above."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def layer_of(module: str) -> int:
    """The layer of ``agentops_server.<top>...``: its first name below the package decides."""
    top = module.split(".")[1] if "." in module else "__init__"
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module} is in no layer: place {top!r} in LAYERS and the docs")


def imports_of(path: Path) -> set[str]:
    """The ``agentops_server`` modules (and names in them) ``path`` imports."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    return imported_by(path.read_text(), package)


def imported_by(source: str, package: list[str]) -> set[str]:
    """What ``source``, a module of ``package``, imports from ``agentops_server``, absolute or
    relative, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], base]).rstrip(".")
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name == PACKAGE or name.startswith(f"{PACKAGE}.")}


def modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def test_every_module_of_the_hub_belongs_to_a_layer() -> None:
    for path in modules():
        layer_of(module_name(path))


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = []
    for path in modules():
        importer = module_name(path)
        for imported in sorted(imports_of(path)):
            if layer_of(imported) > layer_of(importer):
                upward.append(f"{importer} imports {imported}")
    assert upward == []


def test_the_check_sees_an_upward_import_even_inside_a_function() -> None:
    source = "def late():\n    from ..services.audit import record\n    return record\n"
    importer = "agentops_server.db.probe"

    upward = {
        name
        for name in imported_by(source, ["agentops_server", "db"])
        if layer_of(name) > layer_of(importer)
    }

    assert upward == {"agentops_server.services.audit", "agentops_server.services.audit.record"}
