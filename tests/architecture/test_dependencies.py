"""The app dependency direction written in docs/architecture.md holds for every import in apps/, and for every
template in apps/ that loads another app's tag library or includes or extends another app's template."""

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


LOAD = re.compile(r"{%\s*load\s+(.*?)\s*%}")
TEMPLATE_REF = re.compile(r"""{%\s*(?:include|extends)\s+["']([^"'/]+)/""")


def _owners() -> tuple[dict[str, str], dict[str, str]]:
    """Which app owns each template tag library (apps/<app>/templatetags/<lib>.py) and each template folder
    (apps/<app>/templates/<folder>/)."""
    libraries = {p.stem: p.parent.parent.name for p in APPS.glob("*/templatetags/*.py") if p.stem != "__init__"}
    folders = {p.name: p.parent.parent.name for p in APPS.glob("*/templates/*") if p.is_dir()}
    return libraries, folders


def _template_uses(path: Path, libraries: dict[str, str], folders: dict[str, str]) -> list[tuple[str, str, int]]:
    """(app, what, line) for each app whose tag library the template loads or whose template it includes or
    extends; libraries that are no app's (static, partials, django_htmx) are left out."""
    text = path.read_text(encoding="utf-8")
    found = []
    for match in LOAD.finditer(text):
        bits = match.group(1).split()
        names = bits[bits.index("from") + 1 :] if "from" in bits else bits
        line = text.count("\n", 0, match.start()) + 1
        found += [(libraries[n], f"loads {n}", line) for n in names if n in libraries]
    for match in TEMPLATE_REF.finditer(text):
        if match.group(1) in folders:
            line = text.count("\n", 0, match.start()) + 1
            found.append((folders[match.group(1)], f"uses the template folder {match.group(1)}/", line))
    return found


def test_its_templates_use_only_the_apps_below_it():
    allowed = _allowed()
    libraries, folders = _owners()
    assert "history_links" in libraries and "object_links" in libraries  # the scan sees the libraries it checks
    wrong = []
    for path in sorted(APPS.glob("*/templates/**/*.html")):
        app = path.relative_to(APPS).parts[0]
        for used, what, line in _template_uses(path, libraries, folders):
            if used != app and used not in allowed[app]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} {what} of {used} ({app} may use {allowed[app]})")
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
