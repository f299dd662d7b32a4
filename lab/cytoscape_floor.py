"""What Cytoscape.js alone takes to put a graph on screen in this browser: the floor under the graph page's warm
reload (`lab.bench graph`, "chromium reload").

What the page has on screen (the elements shown, their ids, ends and positions; whether it styled them as a large
graph; its canvas's size and viewport), on a page with nothing but `cytoscape.min.js` (the copy Meshboard serves), the
page's no-op layout and a two-rule stylesheet (grey nodes, grey lines drawn as the page draws a large graph's: none of
its classes, no labels), with the renderer options the page uses. Served from a folder of its own over HTTP/1.1 on
127.0.0.1 as the page's files are: the script cached for a year, the elements preloaded and revalidated at every
reload (304). Timed as the page times itself: to Cytoscape's next frame after it was built, on the page's clock
(`since_navigation_ms`, as the bench's "reload" row); `drawn_ms` from the `cytoscape()` call.
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import django.conf

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Cytoscape alone</title>
<link rel="preload" href="elements.json" as="fetch" crossorigin>
<style>body { margin: 0 } #cy { width: %(width)dpx; height: %(height)dpx }</style>
<script src="cytoscape.min.js" defer></script><script src="floor.js" defer></script></head>
<body><div id="cy"></div></body></html>"""

# The page's own no-op layout (static/js/graph.js KeepLayout, taken from it by `_keep_layout`) comes before this:
# Cytoscape runs a layout when it is built, and its "null" layout would move every node to (0, 0).
SCRIPT = """
cytoscape("layout", "keep", KeepLayout);
fetch("elements.json", { credentials: "same-origin" }).then((r) => r.json()).then((drawn) => {
  const large = drawn.large;
  const started = performance.now();
  const cy = cytoscape({
    container: document.getElementById("cy"), elements: drawn.elements, layout: { name: "keep" },
    style: [
      { selector: "node", style: { "background-color": "#9aa0a6", "width": 22, "height": 22 } },
      { selector: "edge",
        style: { "width": 1.5, "line-color": "#8b95a1", "curve-style": large ? "haystack" : "bezier" } },
    ],
    minZoom: 0.01, maxZoom: 4,
    textureOnViewport: large, hideEdgesOnViewport: large, pixelRatio: large ? 1 : "auto",
  });
  cy.viewport({ zoom: drawn.zoom, pan: drawn.pan });  // the page's, as it drew them
  const built = performance.now();
  let done = false;
  function painted() {
    if (done) return;
    done = true;
    const now = performance.now();
    window.floor = { build_ms: built - started, drawn_ms: now - started, since_navigation_ms: now };
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


def _keep_layout(graph_js: str) -> str:
    """The source of the graph page's KeepLayout, so that the floor runs the same one."""
    found = re.search(r"function KeepLayout\(options\).*?KeepLayout\.prototype\.stop = [^\n]*\n", graph_js, re.DOTALL)
    if found is None:
        raise RuntimeError("static/js/graph.js no longer defines KeepLayout as lab/cytoscape_floor.py expects")
    return found.group(0)


def drawn(page: Any) -> dict[str, Any]:
    """What the graph page has on screen, as plain data: the elements shown (ids, ends, node positions), whether it
    styled them as a large graph, its canvas's size and its viewport."""
    return page.evaluate(
        """() => {
          const cy = mbGraph.cy, shown = cy.elements().not(".off");
          return {
            elements: shown.map((e) => e.isNode()
              ? { group: "nodes", data: { id: e.id() }, position: e.position() }
              : { group: "edges", data: { id: e.id(), source: e.data("source"), target: e.data("target") } }),
            large: mbGraph.large, width: cy.width(), height: cy.height(), zoom: cy.zoom(), pan: cy.pan(),
          };
        }"""
    )


def cytoscape_alone(browser: Any, shown: dict[str, Any], reloads: int) -> list[dict[str, float]]:
    """Times, per reload after a first visit, of what `drawn` read drawn by Cytoscape alone (see the module)."""
    from playwright.sync_api import expect

    static = Path(django.conf.settings.BASE_DIR) / "static"
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "index.html").write_text(PAGE % {"width": shown["width"], "height": shown["height"]})
        (root / "floor.js").write_text(_keep_layout((static / "js" / "graph.js").read_text()) + SCRIPT)
        (root / "cytoscape.min.js").write_bytes((static / "vendor" / "cytoscape" / "cytoscape.min.js").read_bytes())
        (root / "elements.json").write_text(json.dumps(shown))
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=folder))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        context = None
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{server.server_port}/index.html")  # the first visit fills the cache
            expect(page.locator("body")).to_have_attribute("data-painted", "1", timeout=120_000)
            times = []
            for _ in range(reloads):
                page.reload()
                expect(page.locator("body")).to_have_attribute("data-painted", "1", timeout=120_000)
                times.append({**page.evaluate("() => window.floor"), "elements": len(shown["elements"])})
            return times
        finally:
            if context is not None:
                context.close()
            server.shutdown()
            server.server_close()


def summary(times: list[dict[str, float]]) -> str:
    """`3 reloads of 2990 elements: build_ms median …` for what `cytoscape_alone` returned."""
    parts = [f"{key} median {statistics.median(t[key] for t in times):.0f}" for key in times[0] if key != "elements"]
    return f"{len(times)} reloads of {times[0]['elements']} elements: " + ", ".join(parts)
