"""The layout the README promises: `project/` imports no app, and the apps import in one
direction only, accounts <- analytics <- inference."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.conf import settings

# What each package may import of ours, besides itself.
ALLOWED = {
    "project": set(),
    "accounts": {"project"},
    "analytics": {"project", "accounts"},
    "inference": {"project", "accounts", "analytics"},
}


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", list(ALLOWED))
def test_imports_go_one_way(package):
    wrong = {}
    for path in sorted((Path(settings.BASE_DIR) / package).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        if extra := _imported_packages(path) - ALLOWED[package] - {package}:
            wrong[str(path.relative_to(settings.BASE_DIR))] = sorted(extra)
    assert not wrong
