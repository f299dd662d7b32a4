// The service graph: Cytoscape.js + fcose, drawn from the JSON endpoint (no inline script; the CSP forbids it).
// Every string from the cluster or Prometheus reaches the page as Cytoscape canvas text or DOM textContent, never HTML.
// Positions are stable: the endpoint sends every node and edge whatever the filters (sorted by id) and the page lays
// them all out once with fcose under a seeded random source, so the same graph gets the same picture in any browser;
// the positions are then kept per node id (in memory and in localStorage per user and cluster), and a filter (the
// namespaces, find/hide, the policy-only box) only hides elements: nothing is laid out again. Nodes first seen on a
// refresh are placed beside their neighbours at an angle derived from their id.
(function () {
  "use strict";

  var COLORS = { healthy: "#3c9a45", degraded: "#e0a400", failing: "#d33b2f", unknown: "#9aa0a6" };
  var LARGE = 300; // nodes above which the layout runs in fcose's draft quality and the renderer saves effort
  var FONT = "sans-serif";
  var EDGE_FONT = 12; // px at zoom 1; labels (and their padlocks) are not drawn below MIN_FONT px on screen
  var MIN_FONT = 6;
  var LOCK = EDGE_FONT + 1; // a padlock's size, drawn left of its label (which moves right to make room)
  var SEED = 20240611;
  var state = { cy: null, data: null, positions: {}, key: "", renders: 0, timings: {}, showIdle: false,
    icons: {}, locksDrawn: 0 };
  window.mbGraph = state;

  // Which padlock an edge gets: closed for mTLS, open when an end lacks the sidecar; none when unknown.
  function lockIcon(lock) { return lock === "mtls" ? "mtls" : (lock === "plain" || lock === "partial") ? "open" : ""; }
  state.lockIcon = lockIcon;

  // -- deterministic randomness ------------------------------------------------------------------------------------
  function hash(text) { // FNV-1a, 32 bits
    var h = 2166136261;
    for (var i = 0; i < text.length; i++) { h ^= text.charCodeAt(i); h = Math.imul(h, 16777619); }
    return h >>> 0;
  }
  function seeded(seed) { // mulberry32
    var a = seed >>> 0;
    return function () {
      a = (a + 0x6D2B79F5) | 0;
      var t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  // fcose draws its spectral samples from Math.random and layout-base keeps its own counter: for the layout's
  // (synchronous: animate is off) run both are seeded, so the same elements in the same order give the same picture.
  function withSeed(fn) {
    var saved = Math.random;
    Math.random = seeded(SEED);
    if (window.layoutBase && window.layoutBase.RandomSeed) {
      window.layoutBase.RandomSeed.seed = 1;
      window.layoutBase.RandomSeed.x = 0;
    }
    try { return fn(); } finally { Math.random = saved; }
  }

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
        "label": "data(name)", "font-size": 13, "font-family": FONT, "text-valign": "bottom", "text-margin-y": 3,
        "min-zoomed-font-size": MIN_FONT, "background-color": "#9aa0a6", "width": 22, "height": 22,
        "border-width": 2, "border-color": "#4a4f55", "text-wrap": "ellipsis", "text-max-width": "160px",
        "color": "#1d2329", "text-background-color": "#ffffff", "text-background-opacity": 0.75,
        "text-background-padding": 1, "text-background-shape": "round-rectangle" } },
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
      { selector: "node.warning", style: { "label": "data(display)", "border-color": "#c77700", "border-width": 5,
        "border-style": "double", "color": "#7a4b00", "font-weight": "bold" } },
      { selector: "node.namespace", style: {
        "shape": "round-rectangle", "background-color": "#eef1f6", "background-opacity": 0.6,
        "border-width": 1, "border-color": "#aab", "label": "data(label)", "text-valign": "top",
        "text-halign": "center", "font-size": 13, "font-weight": "bold", "color": "#335", "padding": 14,
        "text-background-opacity": 0, "min-zoomed-font-size": 5 } },
      { selector: "node.namespace.unmonitored", style: { "border-style": "dashed", "background-color": "#f6efe6" } },
      { selector: "edge", style: {
        "width": 1.5, "line-color": "#8b95a1", "target-arrow-color": "#8b95a1", "target-arrow-shape": "triangle",
        "curve-style": large ? "straight" : "bezier", "arrow-scale": 0.8, "control-point-step-size": 60,
        "label": "data(display)", "font-size": EDGE_FONT, "font-family": FONT, "min-zoomed-font-size": MIN_FONT,
        "text-rotation": "none", "color": "#1d2329",
        "text-background-color": "#ffffff", "text-background-opacity": 0.94, "text-background-padding": 2,
        "text-background-shape": "round-rectangle", "text-border-width": 1, "text-border-color": "#c3c9d1",
        "text-border-opacity": 1 } },
      { selector: "edge.has-lock", style: { "text-margin-x": (LOCK + 3) / 2 } },
      { selector: "edge.errors", style: { "line-color": "#d33b2f", "target-arrow-color": "#d33b2f" } },
      { selector: "edge.plain, edge.partial", style: { "line-style": "dashed", "line-color": "#e07b00",
        "target-arrow-color": "#e07b00" } },
      { selector: "edge.denied", style: { "line-style": "dotted", "width": 2.5, "line-color": "#b3261e",
        "target-arrow-color": "#b3261e", "target-arrow-shape": "tee", "color": "#8c1d18", "font-weight": "bold",
        "text-border-color": "#b3261e" } },
      { selector: "edge.split", style: { "line-style": "dashed", "line-color": "#1e6fd9", "target-arrow-color": "#1e6fd9",
        "width": 2.5, "color": "#0b3d8c", "font-weight": "bold" } },
      { selector: "edge.split.warning[label_dy]", style: { "text-margin-y": "data(label_dy)" } },
      { selector: "edge.split.warning", style: { "line-color": "#c77700", "target-arrow-color": "#c77700",
        "color": "#7a4b00", "text-border-color": "#c77700", "text-wrap": "wrap",
        "text-max-width": "400px" } },
      { selector: "edge.idle", style: { "line-style": "dashed", "line-dash-pattern": [3, 4], "opacity": 0.55,
        "color": "#5f6670", "font-size": EDGE_FONT - 1 } },
      { selector: ".found", style: { "overlay-color": "#1e6fd9", "overlay-opacity": 0.25, "overlay-padding": 6 } },
      { selector: "node.found", style: { "border-color": "#1e6fd9", "border-width": 4 } },
      { selector: ":selected", style: { "overlay-color": "#000", "overlay-opacity": 0.15, "overlay-padding": 5 } },
      // Filtered out, or idle while policy-only edges are not asked for: kept (with its position), not drawn.
      { selector: ".off", style: { "display": "none" } },
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
  // Nodes take the kept (rounded) position itself, so a reload draws them exactly where they were.
  function snap(nodes) {
    nodes.forEach(function (n) {
      var p = state.positions[n.id()];
      if (p) n.position({ x: p[0], y: p[1] });
    });
  }

  // Hidden: filtered out by the server's filters, or idle (policy-only) while the box is not ticked.
  function isOff(classes) {
    var c = " " + classes + " ";
    return c.indexOf(" filtered ") >= 0 || (!state.showIdle && c.indexOf(" idle ") >= 0);
  }
  function classesOf(e) {
    var classes = e.classes || "";
    if (e.data.group === "edges" && e.data.kind !== "split" && lockIcon(e.data.lock)) classes += " has-lock";
    return classes;
  }

  function prepare(data) {
    data.elements.nodes.forEach(function (n) {
      var p = state.positions[n.data.id];
      if (p) n.position = { x: p[0], y: p[1] }; // kept: drawn there from the start, nothing to move afterwards
      if (n.data.warnings && n.data.warnings.length) n.data.display = "\u26A0 " + n.data.name;
      n.classes = classesOf(n);
    });
    data.elements.edges.forEach(function (e) {
      var d = e.data;
      e.classes = classesOf(e);
      d.display = d.label;
      if (d.kind === "split" && d.warnings && d.warnings.length) {
        d.display = d.label.replace(": ", ":\n"); // the split's name above its weights
        d.label_dy = 0; // set by stackSplitLabels once the positions are known
      }
    });
    return data.elements;
  }

  // Several splits on one root: their edges run side by side and their labels (two lines each) would cover one
  // another, so the labels of a root's split edges are stacked in rows, one per edge, centred on their middles.
  function stackSplitLabels(cy) {
    var rows = {};
    cy.edges(".split.warning").forEach(function (e) {
      if (e.hasClass("off")) return;
      var s = e.source().position(), t = e.target().position();
      (rows[e.data("source")] = rows[e.data("source")] || []).push({ edge: e, y: (s.y + t.y) / 2 });
    });
    var height = 2 * EDGE_FONT + 18;
    Object.keys(rows).forEach(function (root) {
      var row = rows[root].sort(function (a, b) { return a.y - b.y || (a.edge.id() < b.edge.id() ? -1 : 1); });
      var mean = row.reduce(function (sum, r) { return sum + r.y; }, 0) / row.length;
      row.forEach(function (r, k) { r.edge.data("label_dy", mean + (k - (row.length - 1) / 2) * height - r.y); });
    });
  }

  // Show or hide by the filters and the policy-only box; positions are untouched.
  // An edge goes with either end. Code asks for `.off` rather than the visible selector: Cytoscape applies styles
  // lazily and caches visible(), which can answer for the classes before the last change.
  function applyVisibility(cy) {
    cy.batch(function () {
      cy.nodes().forEach(function (n) { n.toggleClass("off", isOff(n.classes().join(" "))); });
      cy.edges().forEach(function (e) {
        e.toggleClass("off", isOff(e.classes().join(" ")) || e.source().hasClass("off") || e.target().hasClass("off"));
      });
    });
  }

  // Nodes we have a position for go there; new ones next to placed neighbours (or their namespace), else unplaced.
  function place(cy, added) {
    var unplaced = [];
    cy.nodes().forEach(function (n) {
      if (n.isParent() || (added && !added[n.id()])) return; // nodes already drawn stay where they are
      if (!state.positions[n.id()]) unplaced.push(n); // the others were created at their kept position
    });
    function placeBeside(n) {
      var anchors = n.neighborhood("node").filter(function (m) { return !!state.positions[m.id()]; });
      if (!anchors.length) {
        anchors = cy.nodes().filter(function (m) {
          return m.data("namespace") === n.data("namespace") && !m.isParent() && !!state.positions[m.id()];
        });
      }
      if (!anchors.length) return false;
      var x = 0, y = 0;
      anchors.forEach(function (m) { var p = state.positions[m.id()]; x += p[0]; y += p[1]; });
      var angle = (hash(n.id()) / 4294967296) * 2 * Math.PI; // the same place for the same node, every time
      var pos = { x: Math.round(x / anchors.length + 70 * Math.cos(angle)),
        y: Math.round(y / anchors.length + 70 * Math.sin(angle)) };
      n.position(pos);
      state.positions[n.id()] = [pos.x, pos.y];
      return true;
    }
    // Again while any is placed: a new node can be the anchor of another.
    var stuck = unplaced, before = -1;
    while (stuck.length && stuck.length !== before) {
      before = stuck.length;
      stuck = stuck.filter(function (n) { return !placeBeside(n); });
    }
    return { placed: unplaced.length - stuck.length, stuck: stuck, total: unplaced.length };
  }

  function layoutOptions(leaves, eles) {
    return {
      name: "fcose", eles: eles, quality: leaves > LARGE ? "draft" : "default", randomize: true, animate: false,
      // Below LARGE, labels count in node sizes and repulsion is stronger, so namespace boxes do not overlap.
      nodeDimensionsIncludeLabels: leaves <= LARGE, packComponents: true, nodeSeparation: 60,
      // Split edges carry the longest labels (weight and observed share): longer, so their labels part.
      idealEdgeLength: leaves > LARGE ? 70 : function (edge) { return edge.hasClass("split") ? 170 : 110; },
      nodeRepulsion: leaves > LARGE ? 6000 : 20000,
      tile: true, fit: false, padding: 20,
    };
  }

  // The whole graph, hidden elements included (fcose leaves hidden ones where they are), seeded.
  function runLayout(cy) {
    var started = performance.now();
    var leaves = cy.nodes().filter(function (n) { return !n.isParent(); }).length;
    cy.elements(".off").removeClass("off");
    withSeed(function () { cy.layout(layoutOptions(leaves)).run(); });
    savePositions();
    snap(cy.nodes());
    applyVisibility(cy);
    state.timings.layout_ms = performance.now() - started;
  }

  // New nodes with no placed neighbour and no placed node in their namespace (a namespace first seen on a refresh):
  // laid out among themselves, seeded, then set to the right of what is kept; the kept nodes do not move.
  function layoutApart(cy, stuck) {
    var group = cy.collection(stuck);
    var eles = group.union(group.parents()).union(group.edgesWith(group));
    eles.removeClass("off");
    withSeed(function () { eles.layout(layoutOptions(group.length, eles)).run(); });
    var right = -Infinity, top = Infinity;
    group.forEach(function (n) { delete state.positions[n.id()]; });
    Object.keys(state.positions).forEach(function (id) {
      if (!cy.getElementById(id).length) return; // kept for a node not in the graph now
      right = Math.max(right, state.positions[id][0]);
      top = Math.min(top, state.positions[id][1]);
    });
    var nb = group.boundingBox({ includeLabels: false });
    var dx = (right > -Infinity ? right + 200 : 0) - nb.x1, dy = (top < Infinity ? top : 0) - nb.y1;
    group.forEach(function (n) {
      var p = n.position(), pos = { x: Math.round(p.x + dx), y: Math.round(p.y + dy) };
      n.position(pos);
      state.positions[n.id()] = [pos.x, pos.y];
    });
    applyVisibility(cy);
  }

  function status() {
    var c = state.data.counts, idle = state.showIdle;
    var text = (c.nodes + (idle ? c.idle_nodes : 0)) + " nodes, " + (c.edges + (idle ? c.idle_edges : 0)) + " edges";
    if (c.idle_edges) text += idle ? " (" + c.idle_edges + " policy-only)" : ", " + c.idle_edges + " policy-only hidden";
    if (c.hidden) text += ", " + c.hidden + " hidden";
    if (c.found !== null && c.found !== undefined) text += ", " + c.found + " found";
    document.getElementById("graph-status").textContent = text;
  }

  function showWarnings(warnings) {
    var box = document.getElementById("graph-warnings");
    box.replaceChildren();
    (warnings || []).forEach(function (w) { box.appendChild(el("p", "\u26A0 " + w.text)); });
    box.hidden = !(warnings && warnings.length);
  }

  function finished(mode, started) {
    state.renders += 1;
    state.timings.mode = mode;
    state.timings.total_ms = performance.now() - started;
    document.body.dataset.graphRenders = String(state.renders);
    document.body.dataset.graphQuery = state.drawnQuery || ""; // what the drawn data was asked with
    status();
    showWarnings(state.data.warnings);
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
            ele.classes(e.classes);
          } else {
            cy.add({ group: e.data.group === "edges" ? "edges" : "nodes", data: e.data, classes: e.classes,
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
    var mode = result.placed ? "placed" : "preset";
    if (result.total && known === 0) {
      runLayout(state.cy); // nothing kept yet (first visit, or after Re-layout): the seeded layout of everything
      mode = "layout";
    } else {
      if (result.stuck.length) { layoutApart(state.cy, result.stuck); mode = "placed apart"; }
      applyVisibility(state.cy);
      state.timings.layout_ms = performance.now() - t1;
      if (result.total) savePositions();
    }
    stackSplitLabels(state.cy);
    // The first drawing fits what is shown; later ones keep the user's viewport.
    if (state.renders === 0) state.cy.fit(state.cy.nodes().not(".off"), 20);
    finished(mode, started);
  }

  function setShowIdle(show) {
    state.showIdle = show;
    if (!state.cy) return;
    applyVisibility(state.cy);
    stackSplitLabels(state.cy);
    if (state.data) status();
  }
  state.setShowIdle = setShowIdle;

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
    if (state.showIdle) params.set("idle", "1"); // the page's own state, in the URL so a link shows the same
    return params;
  }
  var inflight = null;
  function load() {
    var params = query();
    var asked = params.toString();
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
        state.drawnQuery = asked;
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

  // The page's URL with the form's state (other parameters, such as the time window, kept), for links and reloads.
  function keepInUrl() {
    var url = new URLSearchParams(window.location.search);
    ["ns", "find", "hide", "idle"].forEach(function (name) { url.delete(name); });
    query().forEach(function (value, name) { url.append(name, value); });
    var search = url.toString();
    history.replaceState(null, "", window.location.pathname + (search ? "?" + search : ""));
  }

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
      warningList(panel, d.warnings);
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
    warningList(panel, d.warnings);
    if (d.idle) {
      panel.appendChild(el("p", "Policy-only: the sidecars are configured for this edge (OSM derives that from " +
        "policy) but no request, byte or refusal was measured on it.", "hint"));
    }
    if (d.denied_rps) row(dl, "denied", fmt(d.denied_rps, "rps") + " refused by policy");
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
    if (d.tls_error_rps) row(dl, "TLS errors", fmt(d.tls_error_rps, "rps"));
    panel.appendChild(dl);
  }
  function warningList(panel, warnings) {
    if (!warnings || !warnings.length) return;
    var ul = el("ul", null, "warnings");
    warnings.forEach(function (w) { ul.appendChild(el("li", "\u26A0 " + w)); });
    panel.appendChild(ul);
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
      tip.textContent = d.namespace + "/" + d.name + " · " + d.health + ": " + (d.reasons || []).join("; ") +
        ((d.warnings || []).length ? "\n\u26A0 " + d.warnings.join("\n\u26A0 ") : "");
      var box = document.getElementById("cy").getBoundingClientRect(), p = event.renderedPosition || { x: 0, y: 0 };
      tip.style.left = (box.left + p.x + 12) + "px";
      tip.style.top = (box.top + p.y + 12) + "px";
      tip.hidden = false;
    });
    cy.on("mouseout", "node", function () { tip.hidden = true; });
    cy.on("dragfree", "node", function () { savePositions(); stackSplitLabels(cy); });
    cy.on("render", drawLocks);
  }

  // -- padlocks --------------------------------------------------------------------------------------------------
  // Cytoscape draws no image on an edge, so the padlocks go on a canvas over its own, just left of each label (moved
  // right by half the room, so the pair stays centred), after every frame it renders; not when labels are too small
  // to be drawn.
  var LABEL_BOX = { includeNodes: false, includeEdges: false, includeLabels: true, includeMainLabels: true,
    includeSourceLabels: false, includeTargetLabels: false, includeOverlays: false, includeUnderlays: false };
  function loadIcons(urls) {
    Object.keys(urls || {}).forEach(function (kind) {
      var img = new Image();
      img.onload = function () { state.icons[kind] = img; if (state.cy) drawLocks(); };
      img.src = urls[kind];
    });
  }
  // Each shown edge's padlock: [icon kind, model x, model y, model size, opacity (an idle edge's)] left of its label.
  function lockSpots(cy, within) {
    var spots = [];
    cy.edges(".has-lock").forEach(function (e) {
      if (e.hasClass("off")) return;
      var bb = e.boundingBox(LABEL_BOX);
      if (!bb.w || (within && (bb.x2 < within.x1 || bb.x1 > within.x2 || bb.y2 < within.y1 || bb.y1 > within.y2))) return;
      spots.push([lockIcon(e.data("lock")), bb.x1 - 1 - LOCK / 2, (bb.y1 + bb.y2) / 2, LOCK, e.data("idle") ? 0.55 : 1]);
    });
    return spots;
  }
  function drawSpots(ctx, spots, toScreen, scale) {
    var drawn = 0;
    spots.forEach(function (s) {
      var img = state.icons[s[0]];
      if (!img) return;
      var p = toScreen(s[1], s[2]), size = s[3] * scale, pad = size * 0.12;
      ctx.globalAlpha = s[4];
      ctx.fillStyle = "rgba(255, 255, 255, 0.94)"; // off the edge's line, like the label's own background
      ctx.fillRect(p.x - size / 2 - pad, p.y - size / 2 - pad, size + 2 * pad, size + 2 * pad);
      ctx.drawImage(img, p.x - size / 2, p.y - size / 2, size, size);
      ctx.globalAlpha = 1;
      drawn += 1;
    });
    return drawn;
  }
  function drawLocks() {
    var cy = state.cy, canvas = document.getElementById("cy-locks");
    if (!cy || !canvas) return;
    var box = cy.container(), ratio = window.devicePixelRatio || 1;
    var w = Math.round(box.clientWidth * ratio), h = Math.round(box.clientHeight * ratio);
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var zoom = cy.zoom(), pan = cy.pan();
    if (EDGE_FONT * zoom < MIN_FONT) { state.locksDrawn = 0; return; }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    state.locksDrawn = drawSpots(ctx, lockSpots(cy, cy.extent()), function (x, y) {
      return { x: x * zoom + pan.x, y: y * zoom + pan.y };
    }, zoom);
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
  // An icon as a PNG data URI (the exported SVG stands alone), drawn from the loaded image.
  function iconUri(kind) {
    var img = state.icons[kind];
    if (!img) return "";
    var canvas = document.createElement("canvas");
    canvas.width = canvas.height = 32;
    canvas.getContext("2d").drawImage(img, 0, 0, 32, 32);
    return canvas.toDataURL("image/png");
  }
  state.svg = function () {
    // Our own SVG writer (the cytoscape-svg plugin is GPL-3.0): boxes, straight edges with labels and padlocks,
    // nodes, names; what is shown only.
    var NS = "http://www.w3.org/2000/svg", cy = state.cy, shown = cy.elements().not(".off");
    var bb = shown.boundingBox(), pad = 30, svg = document.createElementNS(NS, "svg");
    svg.setAttribute("xmlns", NS);
    svg.setAttribute("viewBox", [bb.x1 - pad, bb.y1 - pad, bb.w + 2 * pad, bb.h + 2 * pad].join(" "));
    svg.setAttribute("width", String(Math.round(bb.w + 2 * pad)));
    svg.setAttribute("height", String(Math.round(bb.h + 2 * pad)));
    svg.setAttribute("font-family", FONT);
    function add(parent, tag, attrs, text) {
      var node = document.createElementNS(NS, tag);
      Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
      if (text !== undefined) node.textContent = text;
      parent.appendChild(node);
      return node;
    }
    var measure = document.createElement("canvas").getContext("2d");
    measure.font = "10px " + FONT;
    var icons = { mtls: iconUri("mtls"), open: iconUri("open") };
    var defs = add(svg, "defs", {});
    var marker = add(defs, "marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6,
      markerHeight: 6, orient: "auto-start-reverse" });
    add(marker, "path", { d: "M0,0 L10,5 L0,10 z", fill: "#666" });
    shown.nodes().filter(function (n) { return n.isParent(); }).forEach(function (n) {
      var b = n.boundingBox({ includeLabels: false });
      add(svg, "rect", { x: b.x1, y: b.y1, width: b.w, height: b.h, rx: 6, fill: "#eef1f6", stroke: "#aab" });
      add(svg, "text", { x: b.x1 + b.w / 2, y: b.y1 - 4, "text-anchor": "middle", "font-size": 12,
        "font-weight": "bold" }, n.data("name"));
    });
    shown.edges().forEach(function (e) {
      var s = e.source().position(), t = e.target().position(), d = e.data();
      var color = d.denied_rps ? "#b3261e" : d.kind === "split" ? "#1e6fd9" : d.lock === "mtls" ? "#8b95a1" : "#e07b00";
      var dx = t.x - s.x, dy = t.y - s.y, len = Math.sqrt(dx * dx + dy * dy) || 1;
      add(svg, "line", { x1: s.x, y1: s.y, x2: t.x - dx / len * 12, y2: t.y - dy / len * 12, stroke: color,
        "stroke-width": 1.5, "stroke-dasharray": d.lock === "mtls" && d.kind !== "split" && !d.idle ? "none" : "5,3",
        "marker-end": "url(#arrow)" });
      var icon = e.hasClass("has-lock") ? icons[lockIcon(d.lock)] : "";
      var width = measure.measureText(d.label).width + (icon ? 13 : 0), x = (s.x + t.x) / 2 - width / 2;
      var y = (s.y + t.y) / 2;
      add(svg, "rect", { x: x - 2, y: y - 8, width: width + 4, height: 12, rx: 2, fill: "#fff", "fill-opacity": 0.9 });
      if (icon) add(svg, "image", { href: icon, x: x, y: y - 7.5, width: 10, height: 10 });
      add(svg, "text", { x: x + (icon ? 13 : 0), y: y, "font-size": 10, fill: d.denied_rps ? "#8c1d18" : "#222" },
        d.label);
    });
    shown.nodes().filter(function (n) { return !n.isParent(); }).forEach(function (n) {
      var p = n.position(), d = n.data();
      add(svg, "circle", { cx: p.x, cy: p.y, r: 11, fill: COLORS[d.health] || COLORS.unknown,
        stroke: d.sidecars === "all" ? "#4a4f55" : "#e07b00", "stroke-width": 2,
        "stroke-dasharray": d.sidecars === "all" ? "none" : "3,2" });
      add(svg, "text", { x: p.x, y: p.y + 25, "text-anchor": "middle", "font-size": 11 }, d.display || d.name);
    });
    return new XMLSerializer().serializeToString(svg);
  };
  // Cytoscape's PNG of the whole graph with the padlocks drawn over it, as the page shows them.
  function png(done) {
    var cy = state.cy, bb = cy.elements().boundingBox(); // the box cy.png({full: true}) draws
    var img = new Image();
    img.onload = function () {
      var canvas = document.createElement("canvas");
      canvas.width = img.width;
      canvas.height = img.height;
      var ctx = canvas.getContext("2d"), scale = img.width / Math.ceil(bb.w);
      ctx.drawImage(img, 0, 0);
      drawSpots(ctx, lockSpots(cy, null), function (x, y) {
        return { x: (x - bb.x1) * scale, y: (y - bb.y1) * scale };
      }, scale);
      canvas.toBlob(done, "image/png");
    };
    img.src = cy.png({ output: "base64uri", full: true, bg: "#ffffff", maxWidth: 8000, maxHeight: 8000 });
  }
  var actions = {
    fit: function () { state.cy.fit(state.cy.nodes().not(".off"), 20); },
    relayout: function () {
      state.positions = {};
      try { localStorage.removeItem(state.key); } catch (e) { /* ignore */ }
      var started = performance.now();
      runLayout(state.cy);
      state.cy.fit(state.cy.nodes().not(".off"), 20);
      finished("layout", started);
    },
    png: function () { png(function (blob) { download(blob, stamp() + ".png"); }); },
    svg: function () { download(new Blob([state.svg()], { type: "image/svg+xml" }), stamp() + ".svg"); },
    json: function () {
      // What is shown: the filters' and the policy-only box's hidden elements are left out.
      var out = JSON.parse(JSON.stringify(state.data));
      var shown = function (e) { return !state.cy.getElementById(e.data.id).hasClass("off"); };
      out.elements = { nodes: out.elements.nodes.filter(shown), edges: out.elements.edges.filter(shown) };
      out.positions = {};
      state.cy.nodes().not(".off").forEach(function (n) {
        if (!n.isParent()) out.positions[n.id()] = n.position();
      });
      download(new Blob([JSON.stringify(out, null, 1)], { type: "application/json" }), stamp() + ".json");
    },
  };

  document.addEventListener("DOMContentLoaded", function () {
    var config = document.getElementById("graph-config");
    if (!config || !window.cytoscape) return;
    state.config = JSON.parse(config.textContent);
    state.key = "mb-graph-pos:" + state.config.user + ":" + state.config.cluster; // per user and cluster
    loadPositions();
    loadIcons(state.config.icons);
    var form = document.getElementById("graph-form");
    var idle = form.querySelector("input[name=idle]");
    state.showIdle = idle.checked;
    idle.addEventListener("change", function () {
      setShowIdle(idle.checked);
      keepInUrl();
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      keepInUrl();
      load();
    });
    form.querySelectorAll("button[data-graph]").forEach(function (button) {
      button.addEventListener("click", function () { if (state.cy) actions[button.dataset.graph](); });
    });
    document.body.addEventListener("mb:refresh", load);
    load();
  });
})();
