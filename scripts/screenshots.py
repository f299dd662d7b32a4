"""The README's screenshots, taken from the demo so they never go stale (`make screenshots`).

    .venv/bin/python scripts/screenshots.py                        # starts a demo of its own, then stops it
    .venv/bin/python scripts/screenshots.py --url http://127.0.0.1:8000/   # a running `make demo`

Signs in as the demo's operator (so the splits editor shows its form) and saves the main pages (overview, a service
with its charts, the graph, the splits editor, the policies matrix, the mesh) in the light and the dark scheme to
docs/screenshots/<page>-<scheme>.png: a 1280x800 viewport each, Debian's chromium through Playwright. The scheme is the
browser's (`color_scheme`); an operator who chose a theme in that demo keeps it, so the script stops and says so.

A demo of its own runs on free ports with its state in a temporary folder, and is stopped (SIGINT to its process
group, as Ctrl-C would) when the pictures are taken; in it, the operator first moves 10% of the bookstore's traffic to
bookstore-v2 with the editor, so a canary is under way. The script waits until the rates cover a full window (the
pages stop saying "Metrics warming up", about 5 minutes after the demo starts).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 800}
USER, PASSWORD = "operator", "move-the-canary"  # the demo's operator (lab/supervise.py)
SERVICE = "/services/bookstore/bookstore-v1/"
EDITOR = "/splits/bookstore/bookstore-split/"
# (file name, path, what says the page is drawn); the service page and the graph are scrolled to their charts and
# graph, which are below the fold at 1280x800
PAGES = [
    ("overview", "/", "table.services"),
    ("service", SERVICE, ".chart .main-svg"),
    ("graph", "/graph/", "body[data-graph-renders]"),
    ("splits", EDITOR, "table.weights"),
    ("policies", "/policies/", "h1"),
    ("mesh", "/mesh/", "h1"),
]
SCROLL_TO = {"service": ".chart-grid", "graph": ".graph-wrap"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (the demo's own http URL)
            return response.status == 200
    except OSError:
        return False


@contextmanager
def own_demo(timeout: float) -> Iterator[str]:
    """scripts/demo.sh on free ports with a temporary state folder; yields its URL, stops it afterwards."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="meshboard-screenshots-") as state:
        env = {
            **os.environ,
            "MESHBOARD_DEMO_PORT": str(port),
            "MESHBOARD_DEMO_REDIS_PORT": str(free_port()),
            "MESHBOARD_DEMO_STATE": state,
        }
        log = open(Path(state) / "screenshots-demo.log", "w")  # noqa: SIM115 (closed below, after the demo)
        demo = subprocess.Popen(
            [str(ROOT / "scripts" / "demo.sh")],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + timeout
            while not answers(f"{url}healthz"):
                if demo.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    tail = (Path(state) / "screenshots-demo.log").read_text()[-2000:]
                    raise SystemExit(f"the demo did not start:\n{tail}")
                time.sleep(1)
            print(f"demo up at {url}", flush=True)
            yield url
        finally:
            os.killpg(demo.pid, signal.SIGINT)  # the supervisor stops every process group it started
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
                demo.wait()
            log.close()


def sign_in(page, base: str) -> None:
    page.goto(f"{base}accounts/login/")
    page.fill("#id_username", USER)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(rf"^{re.escape(base)}(\?.*)?$"))


def start_canary(page, base: str) -> None:
    """In a demo of our own only: bookstore-v2 back into the split and 10% of the traffic moved to it through the
    editor, as an operator would, so the pictures show a canary under way (a running demo is left as it is)."""
    page.goto(f"{base}{EDITOR.lstrip('/')}")
    canary = page.locator('input[name="canary_backend"][value="bookstore-v2"]')
    if not canary.count():
        page.click('button[name="action"][value="add"]')
        canary.wait_for()
    canary.check()
    page.click('button[name="preset"][value="shift10"]')
    page.click('button[name="action"][value="preview"]')
    page.click('button[name="action"][value="apply"]')
    page.wait_for_url(re.compile(r"/splits/"))
    print("canary: bookstore-v2 at 10%", flush=True)


def wait_for_traffic(page, base: str, settle: float, timeout: float, full_window: bool = True) -> None:
    """Until the service's charts have points and the rates cover a full window (the pages stop saying "Metrics
    warming up", 5 minutes after Prometheus started), then `settle` seconds more."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(f"{base}{SERVICE.lstrip('/')}")
        page.wait_for_load_state("networkidle")
        points = page.evaluate(
            "() => Array.from(document.querySelectorAll('.chart')).map((c) => Number(c.dataset.points || 0))"
        )
        if points and max(points) > 0 and not (full_window and "warming up" in page.inner_text("main")):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"no settled chart data at {base} after {timeout:.0f} s: is the demo's Prometheus up?")
        time.sleep(10)
    if full_window:
        print(f"charts have a full window of data; {settle:.0f} s more", flush=True)
        time.sleep(settle)


def take(base: str, settle: float, timeout: float, canary: bool = False) -> list[Path]:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        for i, scheme in enumerate(("light", "dark")):
            context = browser.new_context(viewport=VIEWPORT, color_scheme=scheme)
            page = context.new_page()
            sign_in(page, base)
            if page.locator("html").get_attribute("data-theme"):
                raise SystemExit(f"{USER} chose a theme in this demo: set it back to System for the screenshots")
            if i == 0:
                if canary:  # once the demo has collected its mesh and first metrics
                    wait_for_traffic(page, base, settle, timeout, full_window=False)
                    start_canary(page, base)
                wait_for_traffic(page, base, settle, timeout)
            for name, path, ready in PAGES:
                page.goto(f"{base}{path.lstrip('/')}")
                page.wait_for_selector(ready, timeout=30000)
                page.wait_for_load_state("networkidle")
                if name == "graph":
                    page.wait_for_function("() => Number(document.body.dataset.graphRenders || 0) > 0")
                    page.wait_for_timeout(1500)  # the layout's animation settles
                if name in SCROLL_TO:
                    page.evaluate(
                        "(sel) => window.scrollTo(0, document.querySelector(sel).getBoundingClientRect().top"
                        " + window.scrollY - 90)",
                        SCROLL_TO[name],
                    )
                    page.wait_for_timeout(300)
                target = OUT / f"{name}-{scheme}.png"
                page.screenshot(path=str(target))
                saved.append(target)
                print(f"{target.relative_to(ROOT)}: {target.stat().st_size // 1024} KB", flush=True)
            context.close()
        browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running demo (make demo); without it, a demo of its own is started")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds more once the charts cover a window")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the demo and its data")
    args = parser.parse_args(argv)
    if args.url:
        take(args.url.rstrip("/") + "/", args.settle, args.timeout)
    else:
        with own_demo(args.timeout) as url:
            take(url, args.settle, args.timeout, canary=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
