from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from apps.clusters.models import Cluster
from apps.mesh.services import collect_and_record
from lab.seeds.loader import load_seed
from tests.pages.conftest import bookstore, nobody, operator, viewer  # noqa: F401  (the pages' personas and data)

Edit = Callable[[list[dict]], None]


def find(objects: list[dict], kind: str, namespace: str, name: str) -> dict:
    """The seed object of that kind, namespace and name (KeyError if absent)."""
    for obj in objects:
        meta = obj.get("metadata") or {}
        if obj.get("kind") == kind and meta.get("namespace", "") == namespace and meta.get("name") == name:
            return obj
    raise KeyError(f"{kind} {namespace}/{name}")


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o.get("kind") == kind]


@pytest.fixture
def mesh(db, kubeapi_factory) -> Callable[..., Cluster]:
    """`mesh(edit)`: the bookstore seed changed by `edit(objects)`, served, collected; returns the Cluster."""
    count = 0

    def make(edit: Edit | None = None, seed: str = "bookstore") -> Cluster:
        nonlocal count
        loaded = load_seed(seed)
        objects = list(loaded.objects)
        if edit is not None:
            edit(objects)
        server = kubeapi_factory(dataclasses.replace(loaded, objects=objects))
        count += 1
        cluster = Cluster.objects.create(name=f"lab{count}", kubeconfig_path=str(server.kubeconfig))
        _run, error = collect_and_record(cluster)
        assert error is None, error
        return cluster

    return make


# Browser fixtures as tests/pages uses them: Debian's chromium driven by Playwright, never a downloaded browser.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs a loop in the test thread
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed; `make test` installs it (package chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    """A fresh browser context; `page.errors` collects page errors and console errors."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors
    yield page
    context.close()


def login(page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
