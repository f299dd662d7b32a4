"""The app dependency direction written in docs/architecture.md holds for every import in apps/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "apps"


def _allowed() -> dict[str, set[str]]:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = re.search(r"```dependencies\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md lost its ```dependencies block"
    allowed = {}
    for line in block.group(1).strip().splitlines():
        app, _, deps = line.partition(":")
        allowed[app.strip()] = set(deps.split())
    return allowed


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every absolute module name the file imports, at any depth (function-level imports included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
    return found


def _app_sources() -> list[tuple[str, Path]]:
    return [
        (path.relative_to(APPS).parts[0], path)
        for path in sorted(APPS.rglob("*.py"))
        if "migrations" not in path.parts and len(path.relative_to(APPS).parts) > 1
    ]


def test_it_lists_every_app_once():
    apps = {p.name for p in APPS.iterdir() if (p / "apps.py").exists()}
    assert set(_allowed()) == apps


def test_it_imports_only_the_apps_below_it():
    allowed = _allowed()
    wrong = []
    for app, path in _app_sources():
        for module, line in _imports(path):
            parts = module.split(".")
            if parts[0] in ("lab", "tests"):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
            elif parts[0] == "apps" and len(parts) > 1 and parts[1] != app and parts[1] not in allowed[app]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module} ({app} may use {allowed[app]})")
    assert wrong == []


def test_it_declares_no_cycle():
    allowed = _allowed()
    done: set[str] = set()

    def visit(app: str, path: tuple[str, ...]) -> None:
        assert app not in path, f"cycle: {' -> '.join((*path, app))}"
        if app not in done:
            for dep in allowed[app]:
                visit(dep, (*path, app))
            done.add(app)

    for app in allowed:
        visit(app, ())
