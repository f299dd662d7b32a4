// The service graph: Cytoscape.js + fcose, drawn from the JSON endpoint (no inline script; the CSP forbids it).
// Every string from the cluster or Prometheus reaches the page as Cytoscape canvas text or DOM textContent, never HTML.
// Positions are kept per node id (in memory and in localStorage per cluster), so a refresh or a reload redraws the
// same picture; only nodes never seen before are placed (next to their neighbours) or, if many are new, laid out.
(function () {
  "use strict";

  var COLORS = { healthy: "#3c9a45", degraded: "#e0a400", failing: "#d33b2f", unknown: "#9aa0a6" };
  var LARGE = 300; // nodes above which the layout runs in fcose's draft quality and the renderer saves effort
  var state = { cy: null, data: null, positions: {}, key: "", renders: 0, timings: {} };
  window.mbGraph = state;

  // A padlock glyph needs an emoji font; without one, words that always render.
  var MARKS = null;
  function marks() {
    if (MARKS) return MARKS;
    var ctx = document.createElement("canvas").getContext("2d");
    ctx.font = "16px sans-serif";
    var hasLock = ctx.measureText("\uD83D\uDD12").width !== ctx.measureText("\uE83A").width;
    MARKS = hasLock
      ? { mtls: "\uD83D\uDD12", partial: "\uD83D\uDD13", plain: "\uD83D\uDD13", unknown: "?" }
      : { mtls: "[mTLS]", partial: "[partial mTLS]", plain: "[no mTLS]", unknown: "[?]" };
    return MARKS;
  }
  state.lockMark = function (lock) { return marks()[lock] || ""; };

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function fmt(value, kind) {
    if (value === null || value === undefined) return "–";
    if (kind === "pct") return (value * 100).toFixed(value < 0.1 ? 2 : 1) + "%";
    if (kind === "ms") return value.toFixed(1) + " ms";
    if (kind === "rps") return (value < 10 ? value.toPrecision(2) : value.toFixed(0)) + " req/s";
    return String(value);
  }

  function style(large) {
    return [
      { selector: "node", style: {
        "label": "data(name)", "font-size": 10, "text-valign": "bottom", "text-margin-y": 3,
        "min-zoomed-font-size": 7, "background-color": "#9aa0a6", "width": 22, "height": 22,
        "border-width": 2, "border-color": "#4a4f55", "text-wrap": "ellipsis", "text-max-width": "140px" } },
      { selector: "node.healthy", style: { "background-color": COLORS.healthy } },
      { selector: "node.degraded", style: { "background-color": COLORS.degraded } },
      { selector: "node.failing", style: { "background-color": COLORS.failing } },
      { selector: "node.unknown", style: { "background-color": COLORS.unknown } },
      { selector: "node.workload", style: { "shape": "round-rectangle", "width": 26, "height": 18 } },
      { selector: "node.root", style: { "shape": "hexagon", "width": 28, "height": 26, "border-width": 3 } },
      { selector: "node.backend", style: { "border-style": "double", "border-width": 4 } },
      { selector: "node[kind = 'unknown']", style: { "shape": "diamond", "background-color": "#d5d8dc",
        "border-style": "dotted" } },
      { selector: "node.sidecars-none", style: { "border-style": "dashed", "border-color": "#e07b00" } },
      { selector: "node.sidecars-some", style: { "border-style": "dotted", "border-color": "#e07b00" } },
      { selector: "node.namespace", style: {
        "shape": "round-rectangle", "background-color": "#eef1f6", "background-opacity": 0.6,
        "border-width": 1, "border-color": "#aab", "label": "data(label)", "text-valign": "top",
        "text-halign": "center", "font-size": 12, "font-weight": "bold", "color": "#335", "padding": 12,
        "min-zoomed-font-size": 5 } },
      { selector: "node.namespace.unmonitored", style: { "border-style": "dashed", "background-color": "#f6efe6" } },
      { selector: "edge", style: {
        "width": 1.5, "line-color": "#8b95a1", "target-arrow-color": "#8b95a1", "target-arrow-shape": "triangle",
        "curve-style": large ? "straight" : "bezier", "arrow-scale": 0.8,
        "label": "data(display)", "font-size": 8, "min-zoomed-font-size": 8, "text-rotation": "autorotate",
        "text-background-color": "#ffffff", "text-background-opacity": 0.85, "text-background-padding": 1,
        "color": "#333" } },
      { selector: "edge.errors", style: { "line-color": "#d33b2f", "target-arrow-color": "#d33b2f" } },
      { selector: "edge.plain, edge.partial", style: { "line-style": "dashed", "line-color": "#e07b00",
        "target-arrow-color": "#e07b00" } },
      { selector: "edge.denied", style: { "line-style": "dotted", "line-color": "#7a3db8",
        "target-arrow-color": "#7a3db8" } },
      { selector: "edge.split", style: { "line-style": "dashed", "line-color": "#1e6fd9", "target-arrow-color": "#1e6fd9",
        "width": 2.5, "color": "#0b3d8c", "font-weight": "bold" } },
      { selector: "edge.idle", style: { "opacity": 0.3, "label": "" } },
      { selector: ".found", style: { "overlay-color": "#1e6fd9", "overlay-opacity": 0.25, "overlay-padding": 6 } },
      { selector: "node.found", style: { "border-color": "#1e6fd9", "border-width": 4 } },
      { selector: ":selected", style: { "overlay-color": "#000", "overlay-opacity": 0.15, "overlay-padding": 5 } },
    ];
  }

  // -- positions kept across refreshes and reloads ------------------------------------------------------------
  function loadPositions() {
    try { state.positions = JSON.parse(localStorage.getItem(state.key) || "{}") || {}; }
    catch (e) { state.positions = {}; }
  }
  function savePositions() {
    if (!state.cy) return;
    state.cy.nodes().forEach(function (n) {
      if (n.isParent()) return;
      var p = n.position();
      state.positions[n.id()] = [Math.round(p.x), Math.round(p.y)];
    });
    try { localStorage.setItem(state.key, JSON.stringify(state.positions)); } catch (e) { /* quota: memory only */ }
  }

  function prepare(data) {
    var m = marks();
    data.elements.nodes.forEach(function (n) {
      var p = state.positions[n.data.id];
      if (p) n.position = { x: p[0], y: p[1] }; // kept: drawn there from the start, nothing to move afterwards
    });
    data.elements.edges.forEach(function (e) {
      var d = e.data;
      d.display = d.kind === "split" ? d.label : (m[d.lock] || "") + " " + d.label;
    });
    return data.elements;
  }

  // Nodes we have a position for go there; new ones next to placed neighbours (or their namespace), else unplaced.
  function place(cy, added) {
    var unplaced = [];
    cy.nodes().forEach(function (n) {
      if (n.isParent() || (added && !added[n.id()])) return; // nodes already drawn stay where they are
      if (!state.positions[n.id()]) unplaced.push(n); // the others were created at their kept position
    });
    var stuck = [];
    unplaced.forEach(function (n) {
      var anchors = n.neighborhood("node").filter(function (m) { return !!state.positions[m.id()]; });
      if (!anchors.length) {
        anchors = cy.nodes().filter(function (m) {
          return m.data("namespace") === n.data("namespace") && !m.isParent() && !!state.positions[m.id()];
        });
      }
      if (!anchors.length) { stuck.push(n); return; }
      var x = 0, y = 0;
      anchors.forEach(function (m) { var p = state.positions[m.id()]; x += p[0]; y += p[1]; });
      var angle = Math.random() * 2 * Math.PI;
      var pos = { x: x / anchors.length + 60 * Math.cos(angle), y: y / anchors.length + 60 * Math.sin(angle) };
      n.position(pos);
      state.positions[n.id()] = [Math.round(pos.x), Math.round(pos.y)];
    });
    return { placed: unplaced.length - stuck.length, stuck: stuck.length, total: unplaced.length };
  }

  function runLayout(cy, randomize, done) {
    var leaves = cy.nodes().filter(function (n) { return !n.isParent(); }).length;
    var started = performance.now();
    var layout = cy.layout({
      name: "fcose", quality: leaves > LARGE ? "draft" : "default", randomize: randomize, animate: false,
      // Below LARGE, labels count in node sizes and repulsion is stronger, so namespace boxes do not overlap.
      nodeDimensionsIncludeLabels: leaves <= LARGE, packComponents: true, nodeSeparation: 60,
      idealEdgeLength: leaves > LARGE ? 70 : 110, nodeRepulsion: leaves > LARGE ? 6000 : 20000,
      tile: true, fit: true, padding: 20,
    });
    layout.one("layoutstop", function () {
      state.timings.layout_ms = performance.now() - started;
      savePositions();
      done();
    });
    layout.run();
  }

  function finished(mode, started) {
    state.renders += 1;
    state.timings.mode = mode;
    state.timings.total_ms = performance.now() - started;
    document.body.dataset.graphRenders = String(state.renders);
    var c = state.data.counts;
    var text = c.nodes + " nodes, " + c.edges + " edges";
    if (c.hidden) text += ", " + c.hidden + " hidden";
    if (c.found !== null && c.found !== undefined) text += ", " + c.found + " found";
    document.getElementById("graph-status").textContent = text;
  }

  function draw(data, started) {
    var elements = prepare(data);
    var leaves = elements.nodes.length;
    var t0 = performance.now();
    var added = null; // null: every node is new
    if (!state.cy) {
      var large = leaves > LARGE;
      state.cy = window.cytoscape({
        container: document.getElementById("cy"), elements: elements, style: style(large),
        layout: { name: "preset" }, wheelSensitivity: 0.3, minZoom: 0.05, maxZoom: 4,
        textureOnViewport: large, hideEdgesOnViewport: large, pixelRatio: large ? 1 : "auto",
      });
      wire(state.cy);
    } else {
      var cy = state.cy;
      added = {};
      cy.batch(function () {
        var keep = {};
        elements.nodes.concat(elements.edges).forEach(function (e) { keep[e.data.id] = e; });
        cy.elements().forEach(function (ele) { if (!keep[ele.id()]) ele.remove(); });
        // Nodes before edges, parents before children.
        elements.nodes.concat(elements.edges).forEach(function (e) {
          var ele = cy.getElementById(e.data.id);
          if (ele.length) {
            ele.data(e.data);
            ele.classes(e.classes || "");
          } else {
            cy.add({ group: e.data.group === "edges" ? "edges" : "nodes", data: e.data, classes: e.classes || "",
              position: e.position });
            added[e.data.id] = true;
          }
        });
      });
    }
    state.timings.build_ms = performance.now() - t0;
    var t1 = performance.now();
    var result = place(state.cy, added);
    var known = state.cy.nodes().filter(function (n) { return !n.isParent(); }).length - result.total;
    if (result.total && (known === 0 || result.stuck > 0)) {
      // Nothing kept yet (first visit) or new nodes with no placed neighbour: lay out, starting from what is kept.
      runLayout(state.cy, known === 0, function () { finished(known === 0 ? "layout" : "relayout", started); });
      return;
    }
    state.timings.layout_ms = performance.now() - t1;
    if (state.renders === 0) state.cy.fit(state.cy.nodes(), 20); // nodes only: no need to measure 3,000 edge labels
    if (result.placed) savePositions();
    finished(result.placed ? "placed" : "preset", started);
  }

  // -- loading ---------------------------------------------------------------------------------------------------
  function query() {
    var form = document.getElementById("graph-form");
    var params = new URLSearchParams();
    Array.prototype.forEach.call(form.querySelector("select[name=ns]").selectedOptions, function (o) {
      params.append("ns", o.value);
    });
    ["find", "hide"].forEach(function (name) {
      var value = form.querySelector("input[name=" + name + "]").value.trim();
      if (value) params.set(name, value);
    });
    return params;
  }
  var inflight = null;
  function load() {
    var params = query();
    var started = performance.now();
    var error = document.getElementById("graph-error");
    if (inflight) inflight.abort();
    inflight = new AbortController();
    fetch(state.config.dataUrl + "?" + params.toString(), {
      credentials: "same-origin", headers: { Accept: "application/json" }, signal: inflight.signal,
    })
      .then(function (r) {
        return r.json().then(function (body) { return { ok: r.ok, status: r.status, body: body }; },
          function () { return { ok: false, status: r.status, body: {} }; });
      })
      .then(function (res) {
        inflight = null;
        if (!res.ok) {
          error.textContent = res.body.error ? (res.body.field === "hide" ? "Hide: " : "Find: ") + res.body.error
            : "The graph could not be loaded (HTTP " + res.status + ").";
          error.hidden = false;
          return;
        }
        error.hidden = true;
        error.textContent = "";
        state.timings = { fetch_ms: performance.now() - started };
        state.data = res.body;
        draw(res.body, started);
        refreshPanel();
      })
      .catch(function (err) {
        if (err.name === "AbortError") return;
        error.textContent = "The graph could not be loaded: " + err.message;
        error.hidden = false;
      });
  }
  state.load = load;

  // -- side panel, tooltip, click-through -----------------------------------------------------------------------
  var selectedId = null;
  function row(dl, term, value) {
    dl.appendChild(el("dt", term));
    dl.appendChild(el("dd", value));
  }
  function showPanel(ele) {
    var panel = document.getElementById("graph-panel");
    panel.replaceChildren();
    if (!ele || !ele.length) {
      panel.appendChild(el("p", "Select a service or an edge. Double-click a service to open it.", "hint"));
      return;
    }
    var d = ele.data();
    var dl = el("dl");
    if (ele.isNode() && d.kind === "namespace") {
      panel.appendChild(el("h2", "namespace " + d.name));
      row(dl, "in the mesh", d.monitored ? "yes (monitored)" : "no");
      panel.appendChild(dl);
      return;
    }
    if (ele.isNode()) {
      panel.appendChild(el("h2", d.namespace + "/" + d.name));
      row(dl, "kind", d.kind + (d.split ? " (split " + d.split + ")" : ""));
      row(dl, "health", d.health);
      row(dl, "sidecars", d.sidecars + (d.pods ? " · " + d.pods : ""));
      row(dl, "inbound", fmt(d.rps, "rps"));
      row(dl, "5xx", fmt(d.error, "pct"));
      row(dl, "p99", fmt(d.p99_ms, "ms"));
      panel.appendChild(dl);
      panel.appendChild(el("h3", "Health rule"));
      var ul = el("ul", null, "reasons");
      (d.reasons || []).forEach(function (r) { ul.appendChild(el("li", r)); });
      panel.appendChild(ul);
      if (typeof d.url === "string" && d.url.charAt(0) === "/" && d.url.charAt(1) !== "/") {
        var a = el("a", "Open service detail →", "detail-link");
        a.href = d.url;
        panel.appendChild(a);
      }
      return;
    }
    panel.appendChild(el("h2", d.source_namespace + "/" + d.source_name + " → " + d.target_namespace + "/" + d.target_name));
    if (d.kind === "split") {
      row(dl, "split", d.split);
      row(dl, "weight", d.weight_pct === null ? String(d.weight) + " (invalid)" : d.weight_pct.toFixed(1) + "% (weight " + d.weight + ")");
      row(dl, "observed", d.observed_pct === null ? "unknown" : d.observed_pct.toFixed(1) + "% over " + d.observed_window_s + " s");
      row(dl, "observed 5m", d.observed_5m_pct === null ? "unknown" : d.observed_5m_pct.toFixed(1) + "%");
    }
    row(dl, "mTLS", { mtls: "yes: both ends carry the sidecar", partial: "partial: some pods have no sidecar",
      plain: "no: an end has no sidecar", unknown: "unknown: an end is not in the snapshot" }[d.lock] || d.lock);
    row(dl, "requests", fmt(d.rps, "rps"));
    row(dl, "5xx", fmt(d.error, "pct"));
    row(dl, "p99", fmt(d.p99_ms, "ms"));
    if (d.tcp_bytes_rate !== null) row(dl, "TCP", d.tcp_bytes_rate.toFixed(0) + " B/s");
    if (d.denied_rps) row(dl, "denied", fmt(d.denied_rps, "rps"));
    if (d.tls_error_rps) row(dl, "TLS errors", fmt(d.tls_error_rps, "rps"));
    panel.appendChild(dl);
  }
  function refreshPanel() {
    if (!selectedId || !state.cy) return;
    var ele = state.cy.getElementById(selectedId);
    showPanel(ele.length ? ele : null);
  }
  function wire(cy) {
    var tip = document.getElementById("graph-tip");
    cy.on("tap", function (event) {
      if (event.target === cy) { selectedId = null; showPanel(null); return; }
      selectedId = event.target.id();
      showPanel(event.target);
    });
    cy.on("dbltap", "node", function (event) {
      var url = event.target.data("url");
      if (typeof url === "string" && url.charAt(0) === "/" && url.charAt(1) !== "/") window.location.assign(url);
    });
    cy.on("mouseover", "node", function (event) {
      var d = event.target.data();
      if (d.kind === "namespace") return;
      tip.textContent = d.namespace + "/" + d.name + " · " + d.health + ": " + (d.reasons || []).join("; ");
      var box = document.getElementById("cy").getBoundingClientRect(), p = event.renderedPosition || { x: 0, y: 0 };
      tip.style.left = (box.left + p.x + 12) + "px";
      tip.style.top = (box.top + p.y + 12) + "px";
      tip.hidden = false;
    });
    cy.on("mouseout", "node", function () { tip.hidden = true; });
    cy.on("dragfree", "node", savePositions);
  }

  // -- export ----------------------------------------------------------------------------------------------------
  function download(blob, name) {
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(a.href); }, 1000);
  }
  function stamp() { return (state.config.cluster || "graph") + "-" + new Date().toISOString().replace(/[:.]/g, "-"); }
  state.svg = function () {
    // Our own SVG writer (the cytoscape-svg plugin is GPL-3.0): boxes, straight edges with labels, nodes, names.
    var NS = "http://www.w3.org/2000/svg", cy = state.cy, bb = cy.elements().boundingBox();
    var pad = 30, svg = document.createElementNS(NS, "svg");
    svg.setAttribute("xmlns", NS);
    svg.setAttribute("viewBox", [bb.x1 - pad, bb.y1 - pad, bb.w + 2 * pad, bb.h + 2 * pad].join(" "));
    svg.setAttribute("width", String(Math.round(bb.w + 2 * pad)));
    svg.setAttribute("height", String(Math.round(bb.h + 2 * pad)));
    svg.setAttribute("font-family", "sans-serif");
    function add(parent, tag, attrs, text) {
      var node = document.createElementNS(NS, tag);
      Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
      if (text !== undefined) node.textContent = text;
      parent.appendChild(node);
      return node;
    }
    var defs = add(svg, "defs", {});
    var marker = add(defs, "marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6,
      markerHeight: 6, orient: "auto-start-reverse" });
    add(marker, "path", { d: "M0,0 L10,5 L0,10 z", fill: "#666" });
    cy.nodes().filter(function (n) { return n.isParent(); }).forEach(function (n) {
      var b = n.boundingBox({ includeLabels: false });
      add(svg, "rect", { x: b.x1, y: b.y1, width: b.w, height: b.h, rx: 6, fill: "#eef1f6", stroke: "#aab" });
      add(svg, "text", { x: b.x1 + b.w / 2, y: b.y1 - 4, "text-anchor": "middle", "font-size": 12,
        "font-weight": "bold" }, n.data("name"));
    });
    cy.edges().forEach(function (e) {
      var s = e.source().position(), t = e.target().position(), d = e.data();
      var color = d.kind === "split" ? "#1e6fd9" : d.lock === "mtls" ? "#8b95a1" : "#e07b00";
      var dx = t.x - s.x, dy = t.y - s.y, len = Math.sqrt(dx * dx + dy * dy) || 1;
      add(svg, "line", { x1: s.x, y1: s.y, x2: t.x - dx / len * 12, y2: t.y - dy / len * 12, stroke: color,
        "stroke-width": 1.5, "stroke-dasharray": d.lock === "mtls" && d.kind !== "split" ? "none" : "5,3",
        "marker-end": "url(#arrow)" });
      add(svg, "text", { x: (s.x + t.x) / 2, y: (s.y + t.y) / 2 - 3, "text-anchor": "middle", "font-size": 8,
        fill: "#333" }, d.display);
    });
    cy.nodes().filter(function (n) { return !n.isParent(); }).forEach(function (n) {
      var p = n.position(), d = n.data();
      add(svg, "circle", { cx: p.x, cy: p.y, r: 11, fill: COLORS[d.health] || COLORS.unknown,
        stroke: d.sidecars === "all" ? "#4a4f55" : "#e07b00", "stroke-width": 2,
        "stroke-dasharray": d.sidecars === "all" ? "none" : "3,2" });
      add(svg, "text", { x: p.x, y: p.y + 24, "text-anchor": "middle", "font-size": 10 }, d.name);
    });
    return new XMLSerializer().serializeToString(svg);
  };
  var actions = {
    fit: function () { state.cy.fit(undefined, 20); },
    relayout: function () {
      state.positions = {};
      try { localStorage.removeItem(state.key); } catch (e) { /* ignore */ }
      var started = performance.now();
      runLayout(state.cy, true, function () { finished("layout", started); });
    },
    png: function () {
      download(state.cy.png({ output: "blob", full: true, bg: "#ffffff", maxWidth: 8000, maxHeight: 8000 }),
        stamp() + ".png");
    },
    svg: function () { download(new Blob([state.svg()], { type: "image/svg+xml" }), stamp() + ".svg"); },
    json: function () {
      var out = JSON.parse(JSON.stringify(state.data));
      out.positions = {};
      state.cy.nodes().forEach(function (n) {
        if (!n.isParent()) out.positions[n.id()] = n.position();
      });
      download(new Blob([JSON.stringify(out, null, 1)], { type: "application/json" }), stamp() + ".json");
    },
  };

  document.addEventListener("DOMContentLoaded", function () {
    var config = document.getElementById("graph-config");
    if (!config || !window.cytoscape) return;
    state.config = JSON.parse(config.textContent);
    state.key = "mb-graph-pos:" + state.config.cluster;
    loadPositions();
    var form = document.getElementById("graph-form");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var params = query();
      history.replaceState(null, "", window.location.pathname + (params.toString() ? "?" + params.toString() : ""));
      load();
    });
    form.querySelectorAll("button[data-graph]").forEach(function (button) {
      button.addEventListener("click", function () { if (state.cy) actions[button.dataset.graph](); });
    });
    document.body.addEventListener("mb:refresh", load);
    load();
  });
})();
