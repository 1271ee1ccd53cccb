"""The package rules of docs/architecture.md, read from the source with ``ast``.

Every import counts: module-level, inside functions, and ``importlib.import_module("...")``
with a literal name. A new import that breaks a rule fails here, naming the file and line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "modelbus"

TOP_LEVEL_MODULES = {"__init__", "__main__", "errors", "config", "testing"}
SHARED = {"errors", "config"}
# What each package may import of modelbus, besides the shared modules (docs/architecture.md).
MAY_IMPORT: dict[str, set[str]] = {
    "connectors": set(),
    "store": set(),
    "client": set(),
    "registry": {"store", "client"},
    "runtime": {"registry", "store", "client"},
    "listeners": {"connectors", "runtime", "registry", "store", "client"},
    "web": {"listeners", "runtime", "registry", "store", "client"},
    "cli": {"web", "listeners", "runtime", "registry", "store", "client"},
}


def imports(path: Path) -> Iterator[tuple[str, int]]:
    """(module, line) for every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = path.relative_to(SRC).with_suffix("").parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = ".".join(here[: len(here) - node.level])
                base = f"{parent}.{base}" if base else parent
            yield base, node.lineno
            for alias in node.names:  # `from modelbus import web` imports modelbus.web
                yield f"{base}.{alias.name}", node.lineno
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value, node.lineno


def part_of(module: str) -> str | None:
    """``modelbus.listeners.manager`` -> ``listeners``; None outside modelbus."""
    bits = module.split(".")
    return bits[1] if bits[0] == "modelbus" and len(bits) > 1 else None


def names_a_connector(module: str) -> bool:
    """True for ``modelbus.connectors.redis`` and the like: everything of connectors but the
    scheme registry (``modelbus.connectors``, and the names it exports) and the contract
    (``modelbus.connectors.base``), the only doors the rest of modelbus may use."""
    bits = module.split(".")
    return (
        len(bits) > 2 and bits[2] != "base" and (PACKAGE / "connectors" / f"{bits[2]}.py").exists()
    )


def sources(package: str) -> list[Path]:
    return sorted((PACKAGE / package).rglob("*.py"))


def test_only_the_shared_modules_sit_beside_the_packages() -> None:
    stray = {p.stem for p in PACKAGE.glob("*.py")} - TOP_LEVEL_MODULES
    assert not stray, f"modules outside the packages: {sorted(stray)}"
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} == set(MAY_IMPORT)


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_package_imports_only_what_it_may(package: str) -> None:
    allowed = MAY_IMPORT[package] | SHARED | {package}
    broken = []
    for path in sources(package):
        for module, line in imports(path):
            part = part_of(module)
            if part in MAY_IMPORT and part not in allowed:
                broken.append(f"{path.relative_to(SRC)}:{line} imports {module}")
            elif part == "connectors" and package != "connectors" and names_a_connector(module):
                broken.append(f"{path.relative_to(SRC)}:{line} names a connector: {module}")
    assert not broken, "\n".join(broken)


def test_the_shared_modules_import_no_package() -> None:
    for name in SHARED:
        path = PACKAGE / f"{name}.py"
        found = [m for m, _ in imports(path) if part_of(m) in MAY_IMPORT]
        assert not found, f"{path.relative_to(SRC)} imports {found}"


def test_the_runner_imports_nothing_of_modelbus() -> None:
    for path in sorted((SRC / "modelbus_runner").rglob("*.py")):
        found = [m for m, _ in imports(path) if m == "modelbus" or m.startswith("modelbus.")]
        assert not found, f"{path.relative_to(SRC)} imports {found}"


def test_the_allowed_imports_have_no_cycle() -> None:
    """The table itself is layered: following MAY_IMPORT never comes back to the start."""

    def reach(path: tuple[str, ...]) -> None:
        for other in MAY_IMPORT[path[-1]]:
            assert other not in path, f"cycle: {' -> '.join([*path, other])}"
            reach((*path, other))

    for package in MAY_IMPORT:
        reach((package,))
