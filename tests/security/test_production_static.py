"""The README's production path, DEBUG off: gunicorn with meshboard/gunicorn.conf.py on a fresh database after
`migrate` and `collectstatic`; in Chromium every page loads all of its CSS and JS, with the security headers.

Also without `collectstatic`: WhiteNoise serves the source folders too, so a forgotten step costs no page its CSS.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser_fixtures import screenshot
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "alice", "a-long-production-pass"

# Each page and what its scripts define once they ran.
PAGES = {
    "/": ["htmx"],
    "/services/bookstore/bookstore/": ["htmx", "Plotly"],
    "/splits/": ["htmx"],
    "/splits/bookstore/bookstore-split/": ["htmx"],
    "/splits/audit/": ["htmx"],
    "/splits/bookstore/bookstore-split/compare/": ["htmx", "Plotly"],
    "/workloads/bookbuyer/deployment/bookbuyer/": ["htmx", "Plotly"],
    "/graph/": ["htmx", "cytoscape"],
    "/policies/": ["htmx"],
    "/mesh/": ["htmx"],
    "/migrate/": ["htmx"],
    "/history/": ["htmx"],
    "/admin/": [],
}


class Web:
    def __init__(self, workdir: Path, kubeconfig: Path, redis_url: str, *, collectstatic: bool) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MESHBOARD_", "DJANGO_"))},
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": f"sqlite:///{workdir / 'meshboard.sqlite3'}",
            "STATIC_ROOT": str(workdir / "static"),
            "REDIS_URL": redis_url,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "MESHBOARD_BIND": f"127.0.0.1:{self.port}",
            "MESHBOARD_WEB_WORKERS": "1",
            "DJANGO_SETTINGS_MODULE": "meshboard.settings",
        }
        self.workdir, self.kubeconfig, self.collectstatic = workdir, kubeconfig, collectstatic
        self.proc: subprocess.Popen | None = None

    def manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True, capture_output=True, timeout=120
        )

    def start(self) -> Web:
        # The README's steps, in its order.
        self.manage("migrate", "--noinput")
        if self.collectstatic:
            self.manage("collectstatic", "--noinput")
        self.manage("add_cluster", "lab", "--kubeconfig", str(self.kubeconfig))
        self.manage("create_user", USER, "--role", "operator", "--password", PASSWORD, "--staff")
        # What the cluster worker would do on its first run.
        collect = (
            "from apps.clusters.models import Cluster; from apps.mesh.services import collect_and_record; "
            "_, error = collect_and_record(Cluster.objects.get(name='lab')); assert error is None, error"
        )
        self.manage("shell", "--no-imports", "-c", collect)
        log = (self.workdir / "web.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "meshboard/gunicorn.conf.py", "meshboard.wsgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                    return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((self.workdir / "web.log").read_text()[-3000:]) from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)


@pytest.fixture
def production_web(tmp_path, kubeapi, redis_url, request) -> Iterator[Web]:
    web = Web(tmp_path, kubeapi.kubeconfig, redis_url, collectstatic=getattr(request, "param", True))
    try:
        yield web.start()
    finally:
        web.stop()


def test_every_page_loads_its_css_and_js_with_debug_off(production_web, page):
    base = production_web.url
    assets: list[tuple[str, str, int, dict]] = []
    page.on(
        "response",
        lambda r: (
            assets.append((r.request.resource_type, r.url, r.status, r.headers))
            if r.request.resource_type in {"stylesheet", "script"}
            else None
        ),
    )
    page.failed_urls = []
    page.on("response", lambda r: page.failed_urls.append(r.url) if r.status >= 400 else None)
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", USER)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(rf"^{re.escape(base)}/(\?.*)?$"))  # the page writes its view in

    for path, globals_ in PAGES.items():
        assets.clear()
        page.failed_urls.clear()
        page.errors.clear()
        page.goto(f"{base}{path}")
        page.wait_for_load_state("networkidle")
        kinds = {kind for kind, *_ in assets}
        assert "stylesheet" in kinds, f"{path} requested no stylesheet"
        if path != "/admin/":
            assert "script" in kinds, f"{path} requested no script"
        for kind, url, status, headers in assets:
            assert status == 200, f"{path}: {kind} {url} answered {status}"
            assert headers.get("x-content-type-options") == "nosniff", url
            assert "default-src 'self'" in headers.get("content-security-policy", ""), url
            # Linked with the digest of its content and kept for good: no later page asks for it again.
            assert re.search(r"\?v=[0-9a-f]{12}$", url), url
            assert headers.get("cache-control") == "max-age=31536000, public, immutable", url
        # Every stylesheet parsed (a 404 or a text/html answer leaves no rules), and the scripts ran.
        empty = page.evaluate(
            "() => [...document.styleSheets]"
            ".filter(s => { try { return !s.cssRules.length } catch (e) { return true } }).map(s => s.href)"
        )
        assert empty == [], f"{path}: stylesheets without rules: {empty}"
        for name in globals_:
            assert page.evaluate(f"() => typeof window.{name}") != "undefined", f"{path}: {name} did not load"
        # The admin's pages have no favicon link, so Chromium asks for /favicon.ico (404), which is no asset of ours.
        failed = [url for url in page.failed_urls if not url.endswith("/favicon.ico")]
        assert failed == [], f"{path}: {failed}"
        assert [e for e in page.errors if "Failed to load resource" not in e] == [], f"{path}: {page.errors}"
    screenshot(page, "production-mesh")


@pytest.mark.parametrize("production_web", [False], indirect=True, ids=["without-collectstatic"])
def test_assets_are_served_even_without_collectstatic(production_web):
    assert not (production_web.workdir / "static").exists()
    for path in ("/static/css/meshboard.css", "/static/js/meshboard.js", "/static/vendor/plotly/plotly-strict.min.js"):
        with urllib.request.urlopen(f"{production_web.url}{path}", timeout=5) as response:
            assert response.status == 200 and response.read(), path
