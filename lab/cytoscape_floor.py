"""What Cytoscape.js alone takes to put a graph on screen in this browser: the floor under the graph page's warm
reload (`lab.bench graph`, "chromium reload").

The same elements the page drew (ids, parents, ends, positions), on a page with nothing but `cytoscape.min.js` (the
copy Meshboard serves) and a three-rule stylesheet (grey nodes, one colour, straight lines: none of our rules, no
labels), the renderer's options the page uses for a large graph, and the viewport fitted from the positions as the
page does (Cytoscape's own fit would style every element first). Served from a folder of its own over HTTP/1.1 on
127.0.0.1: the script cached for a year, the elements revalidated at every reload (304), as the page's are. Timed as
the page times itself: from the navigation (the page's clock) to Cytoscape's next frame after it was built.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import django.conf

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Cytoscape alone</title>
<style>body { margin: 0 } #cy { width: 1050px; height: 640px }</style>
<script src="cytoscape.min.js" defer></script><script src="floor.js" defer></script></head>
<body><div id="cy"></div></body></html>"""

SCRIPT = """
fetch("elements.json").then((r) => r.json()).then((elements) => {
  const large = elements.length > 300;
  let x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
  elements.forEach((e) => { if (e.position) {
    x1 = Math.min(x1, e.position.x); x2 = Math.max(x2, e.position.x);
    y1 = Math.min(y1, e.position.y); y2 = Math.max(y2, e.position.y); } });
  const started = performance.now();
  const cy = cytoscape({
    container: document.getElementById("cy"), elements: elements, layout: { name: "null" },
    style: [
      { selector: "node", style: { "background-color": "#9aa0a6", "width": 22, "height": 22 } },
      { selector: "edge",
        style: { "width": 1.5, "line-color": "#8b95a1", "curve-style": large ? "haystack" : "straight" } },
      { selector: ":parent", style: { "background-opacity": 0.1 } },
    ],
    textureOnViewport: large, hideEdgesOnViewport: large, pixelRatio: large ? 1 : "auto",
  });
  const zoom = Math.min(1010 / Math.max(1, x2 - x1), 600 / Math.max(1, y2 - y1));
  cy.viewport({ zoom: zoom, pan: { x: (1050 - zoom * (x1 + x2)) / 2, y: (640 - zoom * (y1 + y2)) / 2 } });
  const built = performance.now();
  let done = false;
  function painted() {
    if (done) return;
    done = true;
    const now = performance.now();
    window.floor = { build_ms: built - started, painted_ms: now - started, since_navigation_ms: now };
    document.body.dataset.painted = "1";
  }
  cy.one("render", painted);
  requestAnimationFrame(() => requestAnimationFrame(painted));
});
"""


class _Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # as gunicorn answers: Chromium revalidates what it kept over HTTP/1.1

    def end_headers(self) -> None:
        immutable = self.path.endswith(".js")
        self.send_header("Cache-Control", "public, max-age=31536000, immutable" if immutable else "no-cache")
        super().end_headers()

    def log_message(self, *args: object) -> None:
        pass


def drawn_elements(page: Any) -> list[dict]:
    """The elements the graph page has drawn, as plain data: ids, parents, ends and node positions."""
    return page.evaluate(
        """() => mbGraph.cy.elements().map((e) => e.isNode()
          ? { group: "nodes", data: { id: e.id(), parent: e.data("parent") }, position: e.position() }
          : { group: "edges", data: { id: e.id(), source: e.data("source"), target: e.data("target") } })"""
    )


def cytoscape_alone(browser: Any, elements: list[dict], reloads: int) -> list[dict[str, float]]:
    """Times, per reload after a first visit, of the same elements drawn by Cytoscape alone (see the module)."""
    from playwright.sync_api import expect

    static = Path(django.conf.settings.BASE_DIR) / "static" / "vendor" / "cytoscape" / "cytoscape.min.js"
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "index.html").write_text(PAGE)
        (root / "floor.js").write_text(SCRIPT)
        (root / "cytoscape.min.js").write_bytes(static.read_bytes())
        (root / "elements.json").write_text(json.dumps(elements))
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=folder))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        try:
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{server.server_port}/index.html")  # the first visit fills the cache
            expect(page.locator("body")).to_have_attribute("data-painted", "1", timeout=120_000)
            times = []
            for _ in range(reloads):
                page.reload()
                expect(page.locator("body")).to_have_attribute("data-painted", "1", timeout=120_000)
                times.append({**page.evaluate("() => window.floor"), "elements": len(elements)})
            return times
        finally:
            context.close()
            server.shutdown()
            server.server_close()


def summary(times: list[dict[str, float]]) -> str:
    """`3 reloads of 2990 elements: build_ms median …` for what `cytoscape_alone` returned."""
    parts = [f"{key} median {statistics.median(t[key] for t in times):.0f}" for key in times[0] if key != "elements"]
    return f"{len(times)} reloads of {times[0]['elements']} elements: " + ", ".join(parts)
