"""The package layout of DESIGN.md: each import resolves to this repo, and imports only point downwards."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["kedge", "integrations", "ingress", "agents", "registry", "topology", "protocols", "schemas"]

#: what each package may import of ours (DESIGN.md, "The house"); `kedge` may import everything
ALLOWED: dict[str, set[str]] = {
    "kedge": set(PACKAGES),
    "integrations": {"schemas", "topology", "protocols", "kedge"},
    "ingress": {"schemas", "topology", "protocols", "kedge"},
    "agents": {"topology", "schemas"},
    "registry": {"schemas", "topology"},
    "topology": {"schemas"},
    "protocols": set(),
    "schemas": set(),
}
#: modules of `topology` the registry, ingress and integrations may use (the name rules, nothing else)
TOPOLOGY_FOR_SERVICES = {"topology", "topology.names"}


@pytest.mark.parametrize("package", PACKAGES)
def test_import_resolves_to_this_repo(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().is_relative_to(REPO / package), (
        f"`import {package}` resolved to {module.__file__}, not to this repo (a PyPI package of that name?)"
    )


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_downwards(package: str) -> None:
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        for lineno, name in _imports(path):
            top = name.split(".")[0]
            if top not in PACKAGES or top == package:
                continue
            allowed = top in ALLOWED[package]
            if top == "topology" and package in {"registry", "ingress", "integrations"}:
                allowed = any(name == m or name.startswith(m + ".") for m in TOPOLOGY_FOR_SERVICES - {"topology"})
            if top == "kedge" and package in {"ingress", "integrations"}:
                allowed = not name.startswith(("kedge.cli", "kedge.commands", "kedge.launcher"))
            if not allowed:
                bad.append(f"{path.relative_to(REPO)}:{lineno} imports {name}")
    assert not bad, "imports against the layout of DESIGN.md:\n" + "\n".join(bad)
