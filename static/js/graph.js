// The service graph: Cytoscape.js + fcose, drawn from the JSON endpoint (no inline script; the CSP forbids it).
// Every string from the cluster or Prometheus reaches the page as Cytoscape canvas text or DOM textContent, never HTML.
//
// Positions are stable: the endpoint sends every node and edge whatever the filters (sorted by id); the page lays out
// what it draws once, with fcose under a seeded random source, so the same graph gets the same picture in any
// browser; positions are then kept per node id (in memory and in localStorage per user and cluster), and a filter
// (the namespaces, find/hide, the policy-only box) only hides elements: nothing is laid out again. Nodes first seen on
// a refresh are placed beside their neighbours at an angle derived from their id.
//
// Scale (issue 25):
// - Namespace aggregation: a namespace is drawn either as a box around its nodes or collapsed into one node (a pie of
//   its members' health, with their summed KPIs); edges to a collapsed namespace are folded into one per pair of
//   ends, their KPIs summed. Above `collapseAbove` nodes the page starts with every namespace collapsed (the chosen
//   ones, and those in the URL's `expand`, open); a click on a collapsed namespace expands it. A namespace expanded
//   for the first time is laid out on its own, centred where its node was (the collapsed layout leaves each one room
//   for that), and its positions are kept like any other.
// - Level of detail: labels (and padlocks) only on what is in view once zoomed in far enough to read them; collapsed
//   namespaces and boxes always carry theirs.
// - Elements are built once: a refresh (or an expand, a collapse) adds and removes what changed and patches only the
//   elements whose data or classes changed. Boxes are plain nodes drawn under everything, sized from their members
//   (Cytoscape's compound nodes cost a third of the build); layouts run on an instance of their own (headless above
//   LARGE nodes), where the namespaces are compound nodes. Above LARGE nodes the layout has two levels (layoutAll).
(function () {
  "use strict";

  var COLORS = { healthy: "#3c9a45", degraded: "#e0a400", failing: "#d33b2f", unknown: "#9aa0a6" };
  var LARGE = 300; // nodes above which the layout ignores labels and the renderer saves effort
  var DRAFT = 3000; // nodes above which one layout runs in fcose's draft quality (layouts are per namespace: rare)
  var FONT = "sans-serif";
  var EDGE_FONT = 12; // px at zoom 1; labels (and their padlocks) are not drawn below MIN_FONT px on screen
  var MIN_FONT = 6;
  var LOD_ZOOM = MIN_FONT / EDGE_FONT; // below it no label is readable: none is given (level of detail)
  var NEAR_ZOOM = LOD_ZOOM / 2; // below it a large graph's outlines and arrowheads are under a pixel: none is drawn
  var LOCK = EDGE_FONT + 1; // a padlock's size, drawn left of its label (which moves right to make room)
  var NS_TIES = 4; // in the layout of namespaces, each is tied to the namespaces it shares most edges with, up to this
  var BOX_PAD = 14; // room between a box's edge and its outermost nodes (with their names)
  var SEED = 20240611;
  var OUTLINE = "#4a4f55"; // a node's outline
  var state = { cy: null, data: null, model: null, positions: {}, key: "", renders: 0, timings: {}, showIdle: false,
    icons: {}, locksDrawn: 0, collapsed: {}, ready: {}, auto: null, sigs: {}, lodCount: 0, nearCount: 0, drawnTag: null,
    checks: 0 };
  window.mbGraph = state;

  // Which padlock an edge gets: closed for mTLS, open when an end lacks the sidecar; none when unknown.
  function lockIcon(lock) { return lock === "mtls" ? "mtls" : (lock === "plain" || lock === "partial") ? "open" : ""; }
  state.lockIcon = lockIcon;

  // A layout that leaves every node where it was created (Cytoscape runs one when it is built).
  function KeepLayout(options) { this.options = options; }
  KeepLayout.prototype.run = function () {
    this.emit("layoutstart");
    this.one("layoutready", this.options.ready);
    this.emit("layoutready");
    this.one("layoutstop", this.options.stop);
    this.emit("layoutstop");
    return this;
  };
  KeepLayout.prototype.stop = function () { return this; };
  if (window.cytoscape) window.cytoscape("layout", "keep", KeepLayout);

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
  // As the server's labels write them (apps.graph.graph.traffic_label), for the edges folded here.
  function rate(v) { return v < 10 ? String(Number(v.toPrecision(2))) : v.toFixed(0); }
  function pct(ratio) {
    var p = ratio * 100;
    return p === 0 ? "0%" : (p < 10 ? String(Number(p.toPrecision(2))) : p.toFixed(0)) + "%";
  }
  function bytes(v) {
    var units = ["B/s", "kB/s", "MB/s"];
    for (var i = 0; i < units.length; i++) {
      if (v < 1000) return Number(v.toPrecision(3)) + " " + units[i];
      v /= 1000;
    }
    return Number(v.toPrecision(3)) + " GB/s";
  }

  // The colours of labels, boxes and backgrounds follow the page's scheme (the stylesheet's custom properties);
  // health and edge colours read on either background.
  function palette() {
    var css = getComputedStyle(document.documentElement), get = function (name, fallback) {
      return css.getPropertyValue(name).trim() || fallback;
    };
    return {
      label: get("--graph-label", "#1d2329"), labelBg: get("--graph-label-bg", "#ffffff"),
      labelBorder: get("--graph-label-border", "#c3c9d1"), box: get("--graph-box", "#eef1f6"),
      boxBorder: get("--graph-box-border", "#aaaabb"), boxText: get("--graph-box-text", "#333355"),
      unmonitored: get("--graph-box-unmonitored", "#f6efe6"), idle: get("--graph-idle", "#5f6670"),
      bg: get("--graph-bg", "#ffffff"), warnText: get("--graph-warn-text", "#7a4b00"),
      deniedText: get("--graph-denied-text", "#8c1d18"), splitText: get("--graph-split-text", "#0b3d8c"),
    };
  }

  function mark(path) {
    return "data:image/svg+xml;utf8," + encodeURIComponent('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" ' +
      'fill="none" stroke="#ffffff" stroke-width="3.5" stroke-linecap="round" stroke-linejoin="round">' + path + "</svg>");
  }
  var MARKS = {
    healthy: mark('<path d="M20 6 9 17l-5-5"/>'), degraded: mark('<path d="M12 5v8"/><path d="M12 19h.01"/>'),
    failing: mark('<path d="M18 6 6 18"/><path d="m6 6 12 12"/>'),
    unknown: mark('<path d="M9.1 9a3 3 0 0 1 5.8 1c0 2-3 3-3 3"/><path d="M12 18h.01"/>'),
  };
  function markStyle(health) {
    return { "background-image": MARKS[health], "background-width": "62%", "background-height": "62%",
      "background-image-containment": "inside", "background-clip": "none" };
  }

  function style(large) {
    var P = palette();
    state.lockBg = P.labelBg;
    return [
      // Labels, and how their text looks, come with `.lod` (in view, zoomed in): every style property costs on every
      // element when Cytoscape builds, and most of a large graph is never labelled.
      // In a large graph seen from afar, a node's plain outline and an edge's arrowhead are under a pixel wide, and
      // each property set costs on every element at the first drawing: they come with `.near` (updateLod). An
      // outline that says something (no sidecar, unknown, outside the mesh, a split's root or backend) is drawn at
      // every zoom.
      { selector: large ? "node.near" : "node", style: { "border-width": 2, "border-color": OUTLINE } },
      { selector: "node", style: { "background-color": "#9aa0a6", "width": 22, "height": 22 } },
      { selector: "node.lod", style: { "label": "data(name)",
        "font-size": 13, "font-family": FONT, "text-valign": "bottom", "text-margin-y": 3,
        "min-zoomed-font-size": MIN_FONT, "text-wrap": "ellipsis", "text-max-width": "160px",
        "color": P.label, "text-background-color": P.labelBg, "text-background-opacity": 0.75,
        "text-background-padding": 1, "text-background-shape": "round-rectangle" } },
      { selector: "node.healthy", style: { "background-color": COLORS.healthy } },
      { selector: "node.degraded", style: { "background-color": COLORS.degraded } },
      { selector: "node.failing", style: { "background-color": COLORS.failing } },
      { selector: "node.unknown", style: { "background-color": COLORS.unknown } },
      // Health is never told by colour alone: a node in view and zoomed in (.lod) carries its mark (✓ ! ✕ ?).
      { selector: "node.lod.healthy", style: markStyle("healthy") },
      { selector: "node.lod.degraded", style: markStyle("degraded") },
      { selector: "node.lod.failing", style: markStyle("failing") },
      { selector: "node.lod.unknown", style: markStyle("unknown") },
      { selector: "node.namespace", style: { "background-image": "none" } }, // boxes and pies carry no mark
      { selector: "node.workload", style: { "shape": "round-rectangle", "width": 26, "height": 18 } },
      { selector: "node.root", style: { "shape": "hexagon", "width": 28, "height": 26, "border-width": 3,
        "border-color": OUTLINE } },
      { selector: "node.backend", style: { "border-style": "double", "border-width": 4, "border-color": OUTLINE } },
      { selector: "node[kind = 'unknown']", style: { "shape": "diamond", "background-color": "#d5d8dc",
        "border-style": "dotted", "border-width": 2, "border-color": OUTLINE } },
      // The mesh's edge: an ingress controller (an IngressBackend's source) and an Egress policy's destinations.
      { selector: "node[kind = 'ingress']", style: { "shape": "cut-rectangle", "width": 30, "height": 22,
        "border-color": "#5a3e9e", "border-width": 3 } },
      { selector: "node[kind = 'external']", style: { "shape": "barrel", "width": 30, "height": 22,
        "background-color": "#f1ecfa", "border-color": "#5a3e9e", "border-style": "dashed", "border-width": 2 } },
      { selector: "node.sidecars-none", style: { "border-style": "dashed", "border-color": "#e07b00",
        "border-width": 2 } },
      { selector: "node.sidecars-some", style: { "border-style": "dotted", "border-color": "#e07b00",
        "border-width": 2 } },
      { selector: "node.root.sidecars-none, node.root.sidecars-some", style: { "border-width": 3 } },
      { selector: "node.backend.sidecars-none, node.backend.sidecars-some", style: { "border-width": 4 } },
      { selector: "node.warning", style: { "border-color": "#c77700", "border-width": 5,
        "border-style": "double", "color": P.warnText, "font-weight": "bold" } },
      { selector: "node.warning.lod", style: { "label": "data(display)" } },
      // A namespace drawn open: a box under its nodes and edges, sized from them (not a compound node).
      { selector: "node.namespace.box", style: {
        "shape": "round-rectangle", "width": "data(w)", "height": "data(h)", "z-compound-depth": "bottom",
        "background-color": P.box, "background-opacity": 0.6, "border-width": 1, "border-color": P.boxBorder,
        "label": "data(label)", "text-valign": "top", "text-halign": "center", "text-margin-y": -2,
        "font-size": 13, "font-weight": "bold", "color": P.boxText, "text-background-opacity": 0,
        "min-zoomed-font-size": 5 } },
      { selector: "node.namespace.box.unmonitored", style: { "border-style": "dashed", "background-color": P.unmonitored } },
      // A namespace collapsed into one node: a pie of its members' health, its name and summed KPIs below.
      { selector: "node.namespace.collapsed", style: {
        "shape": "ellipse", "width": "data(agg_size)", "height": "data(agg_size)", "background-color": P.bg,
        "border-width": "mapData(agg_size, 30, 300, 3, 12)", "border-color": P.boxText, "label": "data(agg_label)",
        "text-wrap": "wrap", "text-max-width": "data(agg_text_width)", "font-size": "data(agg_font)",
        "font-weight": "bold", "color": P.label, "text-valign": "bottom", "text-margin-y": 4,
        "min-zoomed-font-size": 4, "text-background-color": P.labelBg, "text-background-opacity": 0.7,
        "pie-size": "100%",
        "pie-1-background-color": COLORS.failing, "pie-1-background-size": "data(pie_failing)",
        "pie-2-background-color": COLORS.degraded, "pie-2-background-size": "data(pie_degraded)",
        "pie-3-background-color": COLORS.healthy, "pie-3-background-size": "data(pie_healthy)",
        "pie-4-background-color": COLORS.unknown, "pie-4-background-size": "data(pie_unknown)" } },
      { selector: "node.namespace.collapsed.unmonitored", style: { "border-style": "dashed",
        "border-color": "#e07b00" } },
      // Measured on 1,000 nodes: font-size, text-rotation, arrow-scale and control-point-step-size on every edge
      // were a third of building and first drawing it; they go with labels, or only to small graphs.
      // Haystack is Cytoscape's cheapest line (no arrowheads): a large graph's edges are drawn so from afar, straight
      // with their arrowhead once in view and near enough. Cytoscape draws a loop (a service calling itself) as a
      // bezier curve whatever it is told, which has its arrowhead at every zoom.
      { selector: "edge", style: Object.assign({ "width": 1.5, "line-color": "#8b95a1",
        "curve-style": large ? "haystack" : "bezier" }, large ? {} : { "arrow-scale": 0.8,
        "control-point-step-size": 60 }) },
      { selector: large ? "edge.near, edge:loop" : "edge", style: { "target-arrow-color": "#8b95a1",
        "target-arrow-shape": "triangle", "curve-style": large ? "straight" : "bezier" } },
      { selector: "edge.lod", style: { "label": "data(display)", "text-rotation": "none", "font-size": EDGE_FONT,
        "font-family": FONT, "min-zoomed-font-size": MIN_FONT, "color": P.label,
        "text-background-color": P.labelBg, "text-background-opacity": 0.94, "text-background-padding": 2,
        "text-background-shape": "round-rectangle", "text-border-width": 1, "text-border-color": P.labelBorder,
        "text-border-opacity": 1 } },
      { selector: "edge.has-lock", style: { "text-margin-x": (LOCK + 3) / 2 } },
      // Edges folded into a collapsed namespace: thicker with more folded in.
      { selector: "edge.aggregate", style: { "width": "data(agg_width)", "line-color": "#6b7683",
        "target-arrow-color": "#6b7683", "target-arrow-shape": "triangle", "curve-style": "straight",
        "opacity": 0.6 } },
      { selector: "edge.errors", style: { "line-color": "#d33b2f", "target-arrow-color": "#d33b2f" } },
      { selector: "edge.plain, edge.partial", style: { "line-style": "dashed", "line-color": "#e07b00",
        "target-arrow-color": "#e07b00" } },
      { selector: "edge.denied", style: { "line-style": "dotted", "width": 2.5, "line-color": "#b3261e",
        "target-arrow-color": "#b3261e", "target-arrow-shape": "tee", "color": P.deniedText, "font-weight": "bold",
        "text-border-color": "#b3261e" } },
      { selector: "edge.ingress, edge.egress", style: { "line-color": "#5a3e9e", "target-arrow-color": "#5a3e9e",
        "width": 2 } },
      // Shaped by a Retry (a circle at the caller's end) or a local rate limit (a bar at the destination's).
      { selector: "edge.retry", style: { "source-arrow-shape": "circle", "source-arrow-color": "#5a3e9e" } },
      { selector: "edge.ratelimit", style: { "target-arrow-shape": "triangle-tee" } },
      { selector: "edge.policy-denied", style: { "line-style": "dotted", "width": 2.5, "line-color": "#7a140e",
        "target-arrow-color": "#7a140e", "target-arrow-shape": "tee" } },
      { selector: "edge.split", style: { "line-style": "dashed", "line-color": "#1e6fd9", "target-arrow-color": "#1e6fd9",
        "width": 2.5, "color": P.splitText, "font-weight": "bold" } },
      { selector: "edge.split.warning[label_dy]", style: { "text-margin-y": "data(label_dy)" } },
      { selector: "edge.split.warning", style: { "line-color": "#c77700", "target-arrow-color": "#c77700",
        "color": P.warnText, "text-border-color": "#c77700", "text-wrap": "wrap",
        "text-max-width": "400px" } },
      { selector: "edge.idle", style: { "line-style": "dashed", "line-dash-pattern": [3, 4], "opacity": 0.55,
        "color": P.idle } },
      { selector: "edge.idle.lod", style: { "font-size": EDGE_FONT - 1 } },
      { selector: ".found", style: { "overlay-color": "#1e6fd9", "overlay-opacity": 0.25, "overlay-padding": 6 } },
      { selector: "node.found", style: { "border-color": "#1e6fd9", "border-width": 4 } },
      { selector: ":selected", style: { "overlay-color": "#000", "overlay-opacity": 0.15, "overlay-padding": 5 } },
      { selector: "node.box:selected", style: { "overlay-opacity": 0, "border-color": "#1e6fd9", "border-width": 3 } },
      // Filtered out, or idle while policy-only edges are not asked for: kept (with its position), not drawn.
      { selector: ".off", style: { "display": "none" } },
    ];
  }

  // The page's scheme changed (the toggle, or the system's while the user follows it): labels, boxes and the
  // padlocks' backgrounds follow, without a reload.
  document.addEventListener("mb:themechange", function () {
    if (!state.cy) return;
    state.cy.style(style(state.large));
    drawLocks();
  });

  // -- positions kept across refreshes and reloads ------------------------------------------------------------
  // Leaves by their id; a collapsed namespace by its box's id (`ns:<name>`), also kept while it is open (the centre
  // of its nodes) so that it collapses and opens in place.
  function loadPositions() {
    try { state.positions = JSON.parse(localStorage.getItem(state.key) || "{}") || {}; }
    catch (e) { state.positions = {}; }
  }
  function storePositions() {
    try { localStorage.setItem(state.key, JSON.stringify(state.positions)); } catch (e) { /* quota: memory only */ }
  }
  function savePositions() {
    if (!state.cy) return;
    state.cy.nodes().forEach(function (n) {
      if (isBox(n.data())) return;
      var p = n.position();
      state.positions[n.id()] = [Math.round(p.x), Math.round(p.y)];
    });
    state.model.order.forEach(function (ns) {
      if (state.collapsed[ns]) return;
      var c = centreOf(ns);
      if (c) state.positions["ns:" + ns] = c;
    });
    storePositions();
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

  // -- the model: everything the server sent, by id and by namespace ---------------------------------------------
  function buildModel(data) {
    var m = { nodes: {}, boxes: {}, members: {}, order: [], edges: data.elements.edges, leaves: 0 };
    data.elements.nodes.forEach(function (n) {
      var d = n.data;
      if (d.kind === "namespace") {
        m.boxes[d.name] = n;
        m.order.push(d.name);
        m.members[d.name] = m.members[d.name] || [];
        return;
      }
      if (d.warnings && d.warnings.length) d.display = "\u26A0 " + d.name;
      n.classes = classesOf(n);
      m.nodes[d.id] = n;
      (m.members[d.namespace] = m.members[d.namespace] || []).push(d.id);
      m.leaves += 1;
    });
    m.edges.forEach(function (e) {
      var d = e.data;
      e.classes = classesOf(e);
      d.display = d.label;
      if (d.kind === "split" && d.warnings && d.warnings.length) {
        d.display = d.label.replace(": ", ":\n"); // the split's name above its weights
        d.label_dy = 0; // set by stackSplitLabels once the positions are known
      }
    });
    return m;
  }

  // Which namespaces start collapsed: above the node count all but the chosen ones and those the URL opens; below it
  // only those the URL closes. Namespaces first seen on a refresh follow the same rule.
  function initCollapsed(m) {
    var url = new URLSearchParams(window.location.search);
    if (state.auto === null) {
      state.auto = m.leaves > (state.config.collapseAbove || Infinity);
      state.seen = {};
      var shut = state.auto ? {} : toSet(url.getAll("collapse"));
      var open = toSet(url.getAll("expand").concat(state.data.selected || []));
      m.order.forEach(function (ns) { if (state.auto ? !open[ns] : shut[ns]) state.collapsed[ns] = true; });
    } else if (state.auto) {
      m.order.forEach(function (ns) { if (!state.seen[ns]) state.collapsed[ns] = true; });
    }
    m.order.forEach(function (ns) { state.seen[ns] = true; });
  }
  function toSet(list) { var s = {}; list.forEach(function (x) { s[x] = true; }); return s; }

  // The size a collapsed namespace gets, and the room the collapsed layout leaves it (about what its nodes take once
  // it is opened and laid out).
  function footprint(count) { return Math.round(60 + 130 * Math.sqrt(Math.max(1, count))); }
  function aggSize(count) { return Math.round(Math.max(30, 0.3 * footprint(count))); }

  // -- what is drawn: open namespaces' nodes with a box, collapsed ones as one node, edges folded accordingly -------
  function display(m) {
    var nodes = [], edges = [], meta = {}, metaIds = [], found = {};
    m.edges.forEach(function (e) { // which namespaces hold something found (shown on them when collapsed)
      if ((" " + e.classes + " ").indexOf(" found ") < 0) return;
      found[m.nodes[e.data.source].data.namespace] = found[m.nodes[e.data.target].data.namespace] = true;
    });
    Object.keys(m.nodes).forEach(function (id) {
      var n = m.nodes[id];
      if ((" " + n.classes + " ").indexOf(" found ") >= 0) found[n.data.namespace] = true;
    });
    m.order.forEach(function (ns) {
      var box = m.boxes[ns], d = Object.assign({}, box.data);
      if (state.collapsed[ns]) {
        var parts = [d.members + (d.members === 1 ? " node" : " nodes")];
        if (d.rps !== null) parts.push(rate(d.rps) + " rps");
        if (d.error !== null) parts.push(pct(d.error) + " 5xx");
        d.agg_label = ns + "\n" + parts.join(" · ");
        // Sized by the room it has (its footprint), so that it reads at the zoom that shows every namespace.
        d.agg_size = aggSize(d.members);
        d.agg_font = d.agg_font_max = Math.round(Math.max(13, footprint(d.members) * 0.11)); // updateLod: by zoom
        d.agg_text_width = footprint(d.members);
        nodes.push({ group: "nodes", data: d, classes: box.classes + " collapsed" + (found[ns] ? " found" : "") });
      } else {
        d.w = d.h = 1; // fitBoxes sizes it once its nodes are placed
        nodes.push({ group: "nodes", data: d, classes: box.classes + " box" });
      }
    });
    m.order.forEach(function (ns) {
      if (state.collapsed[ns]) return;
      m.members[ns].forEach(function (id) {
        var n = m.nodes[id], d = Object.assign({}, n.data);
        delete d.parent; // boxes are plain nodes here: no compound
        nodes.push({ group: "nodes", data: d, classes: n.classes });
      });
    });
    function rep(id) {
      var ns = m.nodes[id].data.namespace;
      return state.collapsed[ns] ? "ns:" + ns : id;
    }
    m.edges.forEach(function (e) {
      var d = e.data, s = rep(d.source), t = rep(d.target);
      if (s === d.source && t === d.target) { edges.push({ group: "edges", data: d, classes: e.classes }); return; }
      if (s === t) return; // inside a collapsed namespace: counted in its node
      var key = s + ">" + t, acc = meta[key];
      if (!acc) {
        acc = meta[key] = { source: s, target: t, n: 0, shown: 0, busy: 0, found: false, rps: null, rate5: null,
          p99: null, tcp: null, denied: null, tls: null, locks: {} };
        metaIds.push(key);
      }
      acc.n += 1;
      var cls = " " + e.classes + " ";
      if (cls.indexOf(" filtered ") >= 0) return; // the filters hide it: it counts for nothing drawn
      acc.shown += 1;
      if (cls.indexOf(" found ") >= 0) acc.found = true;
      if (!d.idle) acc.busy += 1;
      acc.locks[d.lock] = true;
      if (d.rps !== null) {
        acc.rps = (acc.rps || 0) + d.rps;
        if (d.error !== null) acc.rate5 = (acc.rate5 || 0) + d.rps * d.error;
      }
      if (d.p99_ms !== null) acc.p99 = acc.p99 === null ? d.p99_ms : Math.max(acc.p99, d.p99_ms);
      if (d.tcp_bytes_rate !== null) acc.tcp = (acc.tcp || 0) + d.tcp_bytes_rate;
      if (d.denied_rps) acc.denied = (acc.denied || 0) + d.denied_rps;
      if (d.tls_error_rps) acc.tls = (acc.tls || 0) + d.tls_error_rps;
    });
    metaIds.forEach(function (key) { edges.push(foldedEdge(m, meta[key])); });
    return { nodes: nodes, edges: edges };
  }

  // One edge for the edges between two ends, one of them (or both) a collapsed namespace: their KPIs summed, the p99
  // the worst one's, the padlock closed only when every one is mTLS.
  function foldedEdge(m, acc) {
    var locks = Object.keys(acc.locks);
    var lock = locks.length === 1 ? locks[0] : locks.indexOf("unknown") >= 0 ? "unknown" : "partial";
    var error = acc.rps ? (acc.rate5 || 0) / acc.rps : null;
    var parts = [acc.n + (acc.n === 1 ? " edge" : " edges")];
    var idle = acc.shown > 0 && acc.busy === 0;
    if (idle) parts.push("policy-only");
    if (acc.denied) parts.push("denied " + rate(acc.denied) + " rps");
    if (acc.rps !== null && acc.rps > 0) {
      parts.push(rate(acc.rps) + " rps");
      if (error !== null) parts.push(pct(error) + " 5xx");
      if (acc.p99 !== null) parts.push("worst p99 " + Number(acc.p99.toPrecision(3)) + " ms");
    } else if (acc.tcp) {
      parts.push("TCP " + bytes(acc.tcp));
    }
    function end(id) {
      return m.nodes[id] ? m.nodes[id].data : { namespace: id.slice(3), name: "", kind: "namespace" };
    }
    var s = end(acc.source), t = end(acc.target);
    var data = { id: "agg:" + acc.source + ">" + acc.target, group: "edges", source: acc.source, target: acc.target,
      kind: "aggregate", edges: acc.n, rps: acc.rps, error: error, p99_ms: acc.p99, tcp_bytes_rate: acc.tcp,
      denied_rps: acc.denied, tls_error_rps: acc.tls, lock: lock, idle: idle, warnings: [],
      label: parts.join(" · "), source_namespace: s.namespace, source_name: s.name, source_kind: s.kind,
      target_namespace: t.namespace, target_name: t.name, target_kind: t.kind,
      agg_width: Math.min(6, 1.5 + Math.log(acc.n) / Math.LN2 * 0.75) };
    data.display = data.label;
    var classes = ["aggregate", lock];
    if (error >= 0.01) classes.push("errors"); // folded: red from 1 % (a few 5xx somewhere in a namespace is the norm)
    if (acc.denied) classes.push("denied");
    if (idle) classes.push("idle");
    if (!acc.shown) classes.push("filtered");
    else if (acc.found) classes.push("found");
    if (lockIcon(lock)) classes.push("has-lock");
    return { group: "edges", data: data, classes: classes.join(" ") };
  }

  // -- drawing into Cytoscape: built once, then only what changed ------------------------------------------------
  function signature(e) { return e.classes + "|" + JSON.stringify(e.data); }

  // Adds what is new, removes what is gone, patches what changed; returns the ids added.
  function sync(cy, disp) {
    var keep = {}, added = {}, all = disp.nodes.concat(disp.edges);
    all.forEach(function (e) { keep[e.data.id] = true; });
    cy.batch(function () {
      cy.elements().forEach(function (ele) {
        if (!keep[ele.id()]) { delete state.sigs[ele.id()]; if (!ele.removed()) ele.remove(); }
      });
      var fresh = [];
      all.forEach(function (e) {
        var id = e.data.id, sig = signature(e), ele = cy.getElementById(id);
        if (ele.length) {
          if (state.sigs[id] !== sig) { ele.data(e.data); ele.classes(e.classes); }
        } else {
          fresh.push(e);
          added[id] = true;
        }
        state.sigs[id] = sig;
      });
      if (fresh.length) cy.add(fresh);
    });
    return added;
  }

  // Kept positions onto what is drawn; the ids of the nodes with none. A collapsed namespace sits at the centre of its
  // nodes' kept positions (or its own, if none of them was ever placed); boxes follow their nodes (fitBoxes).
  function applyKept(disp) {
    var unplaced = [];
    disp.nodes.forEach(function (e) {
      var d = e.data, p;
      if (d.kind === "namespace") {
        if (!state.collapsed[d.name]) return;
        p = centreOf(d.name) || state.positions[d.id];
      } else {
        p = state.positions[d.id];
      }
      if (p) e.position = { x: p[0], y: p[1] };
      else unplaced.push(d.id);
    });
    return unplaced;
  }
  function centreOf(ns) {
    var x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
    (state.model.members[ns] || []).forEach(function (id) {
      var p = state.positions[id];
      if (!p) return;
      x1 = Math.min(x1, p[0]); x2 = Math.max(x2, p[0]); y1 = Math.min(y1, p[1]); y2 = Math.max(y2, p[1]);
    });
    return x1 === Infinity ? null : [Math.round((x1 + x2) / 2), Math.round((y1 + y2) / 2)];
  }

  // Each open namespace's box around its shown nodes and their names (hidden with them), as Cytoscape sizes a compound
  // node: 14 px around its children with their labels (a label's width estimated, so a box does not change with the
  // level of detail).
  function fitBoxes(cy, only) {
    var m = state.model;
    cy.batch(function () {
      m.order.forEach(function (ns) {
        if (state.collapsed[ns] || (only && only !== ns)) return;
        var box = cy.getElementById("ns:" + ns);
        if (!box.length) return;
        var x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
        m.members[ns].forEach(function (id) {
          var n = cy.getElementById(id);
          if (!n.length || n.hasClass("off")) return;
          var p = n.position(), name = n.data("display") || n.data("name") || "";
          var half = Math.max(14, Math.min(160, 7.2 * name.length) / 2);
          x1 = Math.min(x1, p.x - half); x2 = Math.max(x2, p.x + half);
          y1 = Math.min(y1, p.y - 14); y2 = Math.max(y2, p.y + 32);
        });
        if (x1 === Infinity) return;
        var w = Math.round(x2 - x1 + 2 * BOX_PAD), h = Math.round(y2 - y1 + 2 * BOX_PAD), p = box.position();
        if (box.data("w") !== w || box.data("h") !== h) box.data({ w: w, h: h });
        if (p.x !== (x1 + x2) / 2 || p.y !== (y1 + y2) / 2) box.position({ x: (x1 + x2) / 2, y: (y1 + y2) / 2 });
      });
    });
  }

  // -- layouts: on an instance of their own (the one drawn is only told the positions) ------------------------------
  // Up to LARGE nodes, one layout of all that is drawn, the namespaces as compound nodes (labels measured). Above, two
  // levels: each namespace's nodes are laid out on their own, then the namespaces as nodes (an open one the size of
  // its nodes' layout, a collapsed one the size it will take open: `footprint`), with an edge where any edge runs
  // between two, then pushed apart until no two overlap. Either way a namespace opened later is laid out then,
  // centred where its node was, and nothing else moves. Why two levels: fcose's draft quality (its spectral step
  // alone) piles a thousand nodes up (measured: 1,026 nodes in 1,050 × 640 px) and its default quality on all of
  // them mixes the namespaces, while fifty nodes take it 10–40 ms; and a namespace looks the same open or collapsed.
  // `count`: the nodes in this layout; the rest depends on the graph's size (state.model.leaves).
  function layoutOptions(count, eles) {
    var leaves = state.model.leaves;
    return {
      name: "fcose", eles: eles, quality: count > DRAFT ? "draft" : "default", randomize: true, animate: false,
      // Below LARGE, labels count in node sizes and repulsion is stronger, so labels do not overlap.
      nodeDimensionsIncludeLabels: leaves <= LARGE, packComponents: true, nodeSeparation: 60,
      // Split edges carry the longest labels (weight and observed share): longer, so their labels part.
      idealEdgeLength: leaves > LARGE ? 70 : function (edge) { return edge.hasClass("split") ? 170 : 110; },
      nodeRepulsion: leaves > LARGE ? 6000 : 20000,
      tile: true, fit: false, padding: 20,
    };
  }
  // Lays out `elements` on an instance of its own (headless when `measured` is false: no labels to measure) and
  // returns the positions of its leaves, rounded; seeded.
  function runFcose(elements, count, measured, options) {
    var box = null;
    if (measured) { // a renderer off screen, so that the labels count in the nodes' sizes
      box = document.createElement("div");
      box.style.cssText = "position:absolute;left:-10000px;top:0;width:400px;height:300px;";
      document.body.appendChild(box);
    }
    var cy = window.cytoscape({
      container: box, headless: !measured, styleEnabled: true, elements: elements,
      style: [
        { selector: "node", style: { "width": 22, "height": 22, "font-size": 13, "font-family": FONT,
          "text-valign": "bottom", "text-margin-y": 3, "text-wrap": "ellipsis", "text-max-width": "160px",
          "label": measured ? "data(name)" : "" } },
        { selector: "node.workload", style: { "width": 26, "height": 18 } },
        { selector: "node.root", style: { "width": 28, "height": 26 } },
        { selector: "node[w]", style: { "width": "data(w)", "height": "data(h)", "label": "" } },
        { selector: ":parent", style: { "padding": 14, "label": "" } },
      ],
    });
    var positions = {};
    try {
      withSeed(function () { cy.layout(Object.assign(layoutOptions(count, cy.elements()), options || {})).run(); });
      cy.nodes().forEach(function (n) {
        if (n.isParent()) return;
        var p = n.position();
        positions[n.id()] = [Math.round(p.x), Math.round(p.y)];
      });
    } finally {
      cy.destroy();
      if (box) box.remove();
    }
    return positions;
  }
  // Drawn nodes (leaves, in their namespace as a compound node; collapsed namespaces the size of their footprint)
  // with the edges among them, laid out together.
  function layoutOf(nodeIds, edgeSource, flat, options) {
    var m = state.model, inSet = toSet(nodeIds), parents = {}, elements = [];
    nodeIds.forEach(function (id) {
      var n = m.nodes[id];
      if (n) {
        var ns = n.data.namespace;
        if (!flat && !parents[ns]) { parents[ns] = true; elements.push({ data: { id: "ns:" + ns } }); }
        elements.push({ data: { id: id, parent: flat ? undefined : "ns:" + ns, name: n.data.display || n.data.name },
          classes: n.classes });
      } else { // a collapsed namespace
        var size = footprint(m.boxes[id.slice(3)].data.members);
        elements.push({ data: { id: id, w: size, h: size } });
      }
    });
    edgeSource.forEach(function (e) {
      var d = e.data;
      if (inSet[d.source] && inSet[d.target] && d.source !== d.target) {
        elements.push({ data: { id: d.id, source: d.source, target: d.target }, classes: d.kind });
      }
    });
    return runFcose(elements, nodeIds.length, m.leaves <= LARGE, options);
  }
  function drawnEdges() { return state.cy ? state.cy.edges().map(function (e) { return { data: e.data() }; }) : []; }
  function bounds(points) {
    var b = { x1: Infinity, y1: Infinity, x2: -Infinity, y2: -Infinity };
    points.forEach(function (p) {
      b.x1 = Math.min(b.x1, p[0]); b.x2 = Math.max(b.x2, p[0]); b.y1 = Math.min(b.y1, p[1]); b.y2 = Math.max(b.y2, p[1]);
    });
    return b;
  }
  // One namespace's nodes laid out on their own, centred on (0, 0).
  // A namespace holds tens of nodes, not thousands: the roomier spacing of small graphs (labels need it once zoomed
  // in), without measuring labels. Measured on the synthetic mesh: 50 nodes in about 850 × 700 px, 10–40 ms.
  var LOCAL = { idealEdgeLength: 110, nodeRepulsion: 20000 };
  function layoutNamespace(ns) {
    var ids = state.model.members[ns];
    var positions = layoutOf(ids, state.model.edges, true, state.model.leaves > LARGE ? LOCAL : null);
    var b = bounds(ids.map(function (id) { return positions[id]; }));
    var cx = Math.round((b.x1 + b.x2) / 2), cy = Math.round((b.y1 + b.y2) / 2), out = {};
    ids.forEach(function (id) { out[id] = [positions[id][0] - cx, positions[id][1] - cy]; });
    return { positions: out, w: b.x2 - b.x1, h: b.y2 - b.y1 };
  }

  // Nothing kept yet (a first visit, or after Re-layout): the seeded layout of all that is drawn.
  function layoutAll(disp) {
    var m = state.model, inside = {}, elements = [], pairs = {};
    if (m.leaves <= LARGE) {
      var ids = disp.nodes.filter(function (e) { return !isBox(e.data); }).map(function (e) { return e.data.id; });
      var all = layoutOf(ids, disp.edges);
      Object.keys(all).forEach(function (id) { state.positions[id] = all[id]; });
      return;
    }
    var t = performance.now();
    m.order.forEach(function (ns) {
      var count = m.members[ns].length, size = footprint(count);
      if (!state.collapsed[ns]) inside[ns] = readyLayout(ns) || layoutNamespace(ns);
      // An open namespace: its nodes' spread, room for names (up to 160 px wide, 18 px high) and the box's padding.
      var w = inside[ns] ? inside[ns].w + 160 + 2 * BOX_PAD : size;
      var h = inside[ns] ? inside[ns].h + 46 + 2 * BOX_PAD : size;
      elements.push({ data: { id: "ns:" + ns, w: w, h: h } });
    });
    // Each namespace tied to the four it shares most edges with (a mesh's namespaces nearly all call one another:
    // 1,444 pairs among 103 namespaces at 5,000 services took fcose 0.7 s; these 270 take 0.12 s and say more).
    m.edges.forEach(function (e) {
      var a = m.nodes[e.data.source].data.namespace, b = m.nodes[e.data.target].data.namespace;
      if (a === b) return;
      var key = a < b ? a + "\n" + b : b + "\n" + a;
      pairs[key] = (pairs[key] || 0) + 1;
    });
    var ties = {};
    Object.keys(pairs).sort(function (x, y) { return pairs[y] - pairs[x] || (x < y ? -1 : 1); }).forEach(function (key) {
      var ends = key.split("\n"), a = ends[0], b = ends[1];
      if ((ties[a] || 0) >= NS_TIES && (ties[b] || 0) >= NS_TIES) return;
      ties[a] = (ties[a] || 0) + 1;
      ties[b] = (ties[b] || 0) + 1;
      elements.push({ data: { id: "p:" + a + ">" + b, source: "ns:" + a, target: "ns:" + b } });
    });
    var t1 = performance.now();
    var centres = runFcose(elements, m.order.length, false, { idealEdgeLength: 80, nodeRepulsion: 45000 });
    var t2 = performance.now();
    // Namespaces call one another a lot (a mesh's namespace graph is close to complete), so the forces leave big
    // boxes on top of one another: pushed apart afterwards, the least way each time, until none overlaps.
    separate(spread(elements.filter(function (e) { return !e.data.source; }).map(function (e) {
      var c = centres[e.data.id];
      return { id: e.data.id, x: c[0], y: c[1], w: e.data.w, h: e.data.h };
    })), 40).forEach(function (r) { centres[r.id] = [Math.round(r.x), Math.round(r.y)]; });
    // Where a first layout's time goes: each open namespace's own, the namespaces', their pushing apart.
    state.timings.layout_parts = { inside_ms: Math.round(t1 - t), namespaces_ms: Math.round(t2 - t1),
      apart_ms: Math.round(performance.now() - t2) };
    m.order.forEach(function (ns) {
      var c = centres["ns:" + ns];
      state.positions["ns:" + ns] = c;
      if (!inside[ns]) return;
      m.members[ns].forEach(function (id) {
        var p = inside[ns].positions[id];
        state.positions[id] = [c[0] + p[0], c[1] + p[1]];
      });
    });
  }
  function isBox(d) { return d.kind === "namespace" && !state.collapsed[d.name]; }

  // Rectangles scaled apart from their middle until their centres' box is 1.5 times the area they take together: the
  // arrangement keeps its shape and `separate` has little left to do (alone, it pushes a dense pile into a column).
  function spread(rects) {
    if (rects.length < 2) return rects;
    var b = bounds(rects.map(function (r) { return [r.x, r.y]; })), area = 0;
    rects.forEach(function (r) { area += r.w * r.h; });
    var have = Math.max(1, (b.x2 - b.x1) * (b.y2 - b.y1)), k = Math.sqrt(1.5 * area / have);
    if (k <= 1) return rects;
    var mx = (b.x1 + b.x2) / 2, my = (b.y1 + b.y2) / 2;
    rects.forEach(function (r) { r.x = mx + (r.x - mx) * k; r.y = my + (r.y - my) * k; });
    return rects;
  }
  // Rectangles (centre x, y; w, h) moved apart until no two overlap (with `gap` between), each overlapping pair along
  // the axis where it overlaps least, half each way; deterministic. A hundred namespaces take a few milliseconds.
  function separate(rects, gap) {
    for (var round = 0; round < 500; round++) {
      var moved = false;
      for (var i = 0; i < rects.length; i++) {
        for (var j = i + 1; j < rects.length; j++) {
          var a = rects[i], b = rects[j], dx = b.x - a.x, dy = b.y - a.y;
          var ox = (a.w + b.w) / 2 + gap - Math.abs(dx), oy = (a.h + b.h) / 2 + gap - Math.abs(dy);
          if (ox <= 0 || oy <= 0) continue;
          moved = true;
          if (ox < oy) {
            var sx = (dx < 0 || (dx === 0 && a.id > b.id) ? -1 : 1) * ox / 2;
            a.x -= sx; b.x += sx;
          } else {
            var sy = (dy < 0 || (dy === 0 && a.id > b.id) ? -1 : 1) * oy / 2;
            a.y -= sy; b.y += sy;
          }
        }
      }
      if (!moved) break;
    }
    return rects;
  }

  // A namespace opened for the first time (none of its nodes has a position): laid out on its own and centred where
  // its collapsed node was; the rest does not move.
  function layoutInside(cy, ns) {
    var centre = state.positions["ns:" + ns], local = readyLayout(ns) || layoutNamespace(ns);
    cy.batch(function () {
      state.model.members[ns].forEach(function (id) {
        var p = local.positions[id], pos = { x: centre[0] + p[0], y: centre[1] + p[1] };
        cy.getElementById(id).position(pos);
        state.positions[id] = [pos.x, pos.y];
      });
    });
  }

  // Whether any node of the namespace has a kept position (else opening it lays it out).
  function laidOut(ns) { return state.model.members[ns].some(function (id) { return !!state.positions[id]; }); }
  // Nodes with no kept position: a namespace opened for the first time is laid out inside; other new nodes go next to
  // placed neighbours (or their namespace); what is left (a namespace first seen on a refresh) is laid out apart.
  function place(cy, unplaced) {
    var m = state.model, byNs = {}, rest = [], total = unplaced.length;
    unplaced.forEach(function (id) {
      var n = m.nodes[id];
      if (n) (byNs[n.data.namespace] = byNs[n.data.namespace] || []).push(id);
      else rest.push(id);
    });
    var inside = false;
    Object.keys(byNs).forEach(function (ns) {
      var ids = byNs[ns];
      if (!laidOut(ns) && state.positions["ns:" + ns]) { layoutInside(cy, ns); inside = true; }
      else rest = rest.concat(ids);
    });
    function placeBeside(id) {
      var n = cy.getElementById(id), ns = n.data("namespace"), agg = n.data("kind") === "namespace";
      var anchors = n.neighborhood("node").filter(function (o) {
        return !!state.positions[o.id()] && (agg || o.data("kind") !== "namespace");
      });
      if (!anchors.length && !agg) { // none: its namespace's placed nodes
        anchors = cy.collection(m.members[ns].map(function (i) { return cy.getElementById(i)[0]; })
          .filter(function (o) { return o && !!state.positions[o.id()]; }));
      }
      if (!anchors.length) return false;
      var x = 0, y = 0;
      anchors.forEach(function (o) { var p = state.positions[o.id()]; x += p[0]; y += p[1]; });
      var angle = (hash(id) / 4294967296) * 2 * Math.PI; // the same place for the same node, every time
      var r = agg ? footprint(n.data("members")) : 70;
      var pos = { x: Math.round(x / anchors.length + r * Math.cos(angle)),
        y: Math.round(y / anchors.length + r * Math.sin(angle)) };
      n.position(pos);
      state.positions[id] = [pos.x, pos.y];
      return true;
    }
    // Again while any is placed: a new node can be the anchor of another.
    var stuck = rest, before = -1;
    while (stuck.length && stuck.length !== before) {
      before = stuck.length;
      stuck = stuck.filter(function (id) { return !placeBeside(id); });
    }
    if (stuck.length) layoutApart(cy, stuck);
    return { placed: total - stuck.length, stuck: stuck, total: total, inside: inside };
  }

  // Laid out among themselves, seeded, then set to the right of what is kept; the kept nodes do not move.
  function layoutApart(cy, stuck) {
    var positions = layoutOf(stuck, drawnEdges());
    var right = -Infinity, top = Infinity, x1 = Infinity, y1 = Infinity;
    var mine = toSet(stuck);
    cy.nodes().forEach(function (n) {
      var p = state.positions[n.id()];
      if (!p || mine[n.id()] || isBox(n.data())) return;
      right = Math.max(right, p[0]);
      top = Math.min(top, p[1]);
    });
    stuck.forEach(function (id) { x1 = Math.min(x1, positions[id][0]); y1 = Math.min(y1, positions[id][1]); });
    var dx = (right > -Infinity ? right + 200 : 0) - x1, dy = (top < Infinity ? top : 0) - y1;
    cy.batch(function () {
      stuck.forEach(function (id) {
        var pos = { x: Math.round(positions[id][0] + dx), y: Math.round(positions[id][1] + dy) };
        cy.getElementById(id).position(pos);
        state.positions[id] = [pos.x, pos.y];
      });
    });
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
  // Only the elements that change are touched: Cytoscape's toggleClass restyles an element whatever it had.
  function applyVisibility(cy) {
    function set(ele, off) { if (off !== ele.hasClass("off")) ele.toggleClass("off", off); }
    cy.batch(function () {
      cy.nodes().forEach(function (n) { set(n, isOff(n.classes().join(" "))); });
      cy.edges().forEach(function (e) {
        set(e, isOff(e.classes().join(" ")) || e.source().hasClass("off") || e.target().hasClass("off"));
      });
    });
    fitBoxes(cy);
  }

  // -- level of detail ---------------------------------------------------------------------------------------------
  // Labels only where they can be read: zoomed in to LOD_ZOOM or more, on the shown nodes and edges in view (with a
  // margin). Zoomed out, no label is measured or drawn: that is most of what a large graph costs to draw. In a large
  // graph, a node's outline and an edge's arrowhead come the same way (`.near`) from half that zoom, where they are
  // a pixel or more wide.
  // A collapsed namespace's name is sized to read at the zoom that shows them all, and no bigger than about 16 px on
  // screen once zoomed in (in half-octave steps, so that zooming restyles it rarely).
  function updateLod() {
    var cy = state.cy;
    if (!cy) return;
    var zoom = cy.zoom(), on = zoom >= LOD_ZOOM, ext = cy.extent(), margin = 120 / zoom, count = 0, nearCount = 0;
    var near = zoom >= NEAR_ZOOM && state.large; // a small graph's style has outlines and arrows at any zoom
    var x1 = ext.x1 - margin, x2 = ext.x2 + margin, y1 = ext.y1 - margin, y2 = ext.y2 + margin;
    var font = Math.pow(2, Math.round(2 * Math.log(16 / zoom) / Math.LN2) / 2);
    function inView(p) { return p.x >= x1 && p.x <= x2 && p.y >= y1 && p.y <= y2; }
    function set(ele, cls, want) { if (want !== ele.hasClass(cls)) ele.toggleClass(cls, want); }
    cy.batch(function () {
      cy.nodes(".collapsed").forEach(function (n) {
        var f = Math.round(Math.max(13, Math.min(n.data("agg_font_max"), font)));
        if (n.data("agg_font") !== f) n.data("agg_font", f);
      });
      if (!near && state.nearCount) cy.elements(".near").removeClass("near");
      if (!on && state.lodCount) cy.elements(".lod").removeClass("lod");
      if (!on && !near) {
        state.lodCount = state.nearCount = 0;
        return;
      }
      cy.nodes().forEach(function (n) {
        if (n.data("kind") === "namespace") return; // labelled at any zoom
        var want = !n.hasClass("off") && inView(n.position());
        if (on) set(n, "lod", want);
        if (near) set(n, "near", want);
        count += on && want;
        nearCount += near && want;
      });
      cy.edges().forEach(function (e) {
        var shown = false;
        if (!e.hasClass("off")) {
          var s = e.source().position(), t = e.target().position();
          shown = Math.max(s.x, t.x) >= x1 && Math.min(s.x, t.x) <= x2 && Math.max(s.y, t.y) >= y1 &&
            Math.min(s.y, t.y) <= y2;
        }
        var want = shown && (zoom >= 2 * LOD_ZOOM || !e.hasClass("aggregate")); // folded: labelled from zoom 1
        if (on) set(e, "lod", want);
        if (near) set(e, "near", shown);
        count += on && want;
        nearCount += near && shown;
      });
      state.lodCount = count;
      state.nearCount = nearCount;
    });
  }
  var lodQueued = false;
  function queueLod() {
    if (lodQueued) return;
    lodQueued = true;
    requestAnimationFrame(function () { lodQueued = false; updateLod(); });
  }
  state.updateLod = updateLod;

  function status() {
    var c = state.data.counts, idle = state.showIdle;
    var text = (c.nodes + (idle ? c.idle_nodes : 0)) + " nodes, " + (c.edges + (idle ? c.idle_edges : 0)) + " edges";
    if (c.idle_edges) text += idle ? " (" + c.idle_edges + " policy-only)" : ", " + c.idle_edges + " policy-only hidden";
    if (c.hidden) text += ", " + c.hidden + " hidden";
    if (c.found !== null && c.found !== undefined) text += ", " + c.found + " found";
    var order = state.model.order, shut = order.filter(function (ns) { return state.collapsed[ns]; }).length;
    if (shut) text += "; " + shut + " of " + order.length + " namespaces collapsed (click one to open it)";
    document.getElementById("graph-status").textContent = text;
  }

  function showWarnings(warnings) {
    var box = document.getElementById("graph-warnings");
    box.replaceChildren();
    (warnings || []).forEach(function (w) { box.appendChild(el("p", "\u26A0 " + w.text)); });
    box.hidden = !(warnings && warnings.length);
  }

  function finished(mode, started) {
    var timings = state.timings, renders = state.renders + 1;
    state.renders = renders;
    timings.mode = mode;
    timings.total_ms = performance.now() - started;
    document.body.dataset.graphRenders = String(renders);
    document.body.dataset.graphQuery = state.drawnQuery || ""; // what the drawn data was asked with
    document.getElementById("cy").removeAttribute("aria-busy");
    status();
    showWarnings(state.data.warnings);
    fillTable();
    // On screen: after Cytoscape's next frame (or two frames on, when it had nothing to draw again).
    var done = false;
    function painted() {
      if (done) return;
      done = true;
      timings.painted_ms = performance.now() - started;
      timings.since_navigation_ms = performance.now(); // the page's clock starts with the navigation
      document.body.dataset.graphPainted = String(renders);
    }
    state.cy.one("render", painted);
    requestAnimationFrame(function () { requestAnimationFrame(painted); });
  }

  // What is drawn from the model and the collapsed namespaces: built the first time, patched afterwards. `kind`
  // names an expand or a collapse; otherwise the mode says how the positions came (layout, preset, placed...).
  function redraw(started, kind) {
    var disp = display(state.model);
    var unplaced = applyKept(disp);
    var drawable = disp.nodes.length - disp.nodes.filter(function (e) { return isBox(e.data); }).length;
    var mode = "preset", timings = state.timings;
    if (drawable && unplaced.length === drawable) { // nothing kept yet: the seeded layout of all that is drawn
      var t = performance.now();
      layoutAll(disp);
      unplaced = applyKept(disp);
      timings.layout_ms = performance.now() - t;
      mode = "layout";
    }
    var t0 = performance.now();
    if (!state.cy) {
      var large = state.large = state.model.leaves > LARGE; // the style's, for as long as this instance lives
      state.cy = window.cytoscape({
        container: document.getElementById("cy"), elements: disp.nodes.concat(disp.edges), style: style(large),
        // Nodes come with their positions: "preset" would set each again, and its fit (on by default) measure every
        // edge (300 of the 400 ms a thousand nodes took to build); the drawing fits the nodes itself (fitShown).
        layout: { name: "keep" }, wheelSensitivity: 0.3, minZoom: large ? 0.01 : 0.05, maxZoom: 4,
        textureOnViewport: large, hideEdgesOnViewport: large, pixelRatio: large ? 1 : "auto",
      });
      disp.nodes.concat(disp.edges).forEach(function (e) { state.sigs[e.data.id] = signature(e); });
      wire(state.cy);
    } else {
      sync(state.cy, disp);
      state.cy.batch(function () {
        // Kept positions win over where a node is (a re-layout, a collapse). Only where it differs: setting a node's
        // position, even the same, makes Cytoscape recompute every edge it has (a collapsed namespace has hundreds).
        disp.nodes.forEach(function (e) {
          if (!e.position || (mode !== "layout" && e.data.kind !== "namespace")) return;
          var n = state.cy.getElementById(e.data.id), p = n.position();
          if (p.x !== e.position.x || p.y !== e.position.y) n.position(e.position);
        });
      });
    }
    timings.build_ms = performance.now() - t0;
    var t1 = performance.now();
    if (mode !== "layout") {
      var todo = unplaced.filter(function (id) { return state.cy.getElementById(id).length; });
      if (todo.length) {
        var placed = place(state.cy, todo);
        mode = placed.stuck.length ? "placed apart" : placed.inside ? "laid out inside" : "placed";
      }
      timings.layout_ms = performance.now() - t1;
    }
    timings.placement = mode;
    var t2 = performance.now();
    applyVisibility(state.cy);
    if (mode !== "preset") savePositions();
    stackSplitLabels(state.cy);
    // The first drawing fits what is shown; later ones keep the user's viewport.
    if (state.renders === 0) fitShown(state.cy);
    updateLod();
    timings.finish_ms = performance.now() - t2;
    finished(kind || mode, started);
  }

  // cy.fit() of the shown nodes, from their positions and sizes as we set them: Cytoscape's own asks every node for
  // its bounding box, which makes it style them all there and then (0.1 s of a thousand nodes' first drawing).
  function fitShown(cy) {
    var x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
    cy.nodes().forEach(function (n) {
      if (n.hasClass("off")) return;
      var p = n.position(), d = n.data();
      var w = d.kind !== "namespace" ? 30 : isBox(d) ? d.w : d.agg_size, h = isBox(d) ? d.h : w;
      x1 = Math.min(x1, p.x - w / 2); x2 = Math.max(x2, p.x + w / 2);
      y1 = Math.min(y1, p.y - h / 2); y2 = Math.max(y2, p.y + h / 2);
    });
    if (x1 === Infinity) return;
    var pad = 20, width = cy.width(), height = cy.height();
    var zoom = Math.min((width - 2 * pad) / Math.max(1, x2 - x1), (height - 2 * pad) / Math.max(1, y2 - y1));
    zoom = Math.max(cy.minZoom(), Math.min(cy.maxZoom(), zoom));
    cy.viewport({ zoom: zoom, pan: { x: (width - zoom * (x1 + x2)) / 2, y: (height - zoom * (y1 + y2)) / 2 } });
  }

  function draw(data) {
    var t = performance.now();
    state.model = buildModel(data);
    initCollapsed(state.model);
    state.timings.model_ms = performance.now() - t;
    redraw(state.started);
  }

  // Opening many namespaces at once for the first time ("Expand all" at 5,000 services: 103 of them) lays each out,
  // tens of milliseconds apiece: seconds in all, during which the page would neither answer nor say why. So they are
  // laid out ahead, as many as fit in `openStepMs` at a time with the page free in between and the count on the
  // status line, then drawn in one go (`layoutInside`, or `layoutAll` when nothing is kept, takes a layout made
  // ahead for exactly the namespace's members and the graph's size). A later open or collapse cancels it (what was
  // laid out ahead is dropped with the next drawing); a refresh meanwhile does not.
  var opening = 0;
  // How long the page is held at a time. Measured at 5,000 services (103 namespaces): every turn costs more than its
  // yield (tens of ms: Chromium's frame in software); Expand all took 8.0 s in one turn, 10.4 s in turns of 250 ms,
  // 11-12 s in turns of 40 ms, against 9.0-9.9 s before (one 6 s freeze then).
  state.openStepMs = 250;
  state.sayEveryMs = 1000; // the status line is polite to screen readers: a new count at most this often
  function readyKey(ns) { return (state.model.leaves > LARGE) + "\n" + state.model.members[ns].join("\n"); }
  function readyLayout(ns) {
    var ready = state.ready[ns];
    return ready && ready.key === readyKey(ns) ? ready.layout : null;
  }
  function openMany() {
    var turn = ++opening, m = state.model;
    var todo = m.order.filter(function (ns) { return state.collapsed[ns] && !laidOut(ns); });
    // A graph up to LARGE nodes is laid out whole, in one go, when nothing of it is kept: no namespace alone.
    if (todo.length < 2 || m.leaves <= LARGE) { setCollapsed(m.order.slice(), false); return; }
    var line = document.getElementById("graph-status"), box = document.getElementById("cy"), i = 0, said = -Infinity;
    (function step() {
      if (turn !== opening) return;
      box.setAttribute("aria-busy", "true"); // again after a refresh's drawing meanwhile
      var until = performance.now() + state.openStepMs;
      try {
        do { // at least one a turn; new data meanwhile (a refresh) is laid out as it is now, a namespace gone skipped
          var ns = todo[i++];
          if (state.model.members[ns] && !readyLayout(ns)) {
            state.ready[ns] = { key: readyKey(ns), layout: layoutNamespace(ns) };
          }
        } while (i < todo.length && performance.now() < until);
      } catch (error) { // the line and the busy mark are not left behind
        box.removeAttribute("aria-busy");
        status();
        throw error;
      }
      if (i < todo.length) {
        if (performance.now() - said >= state.sayEveryMs) {
          line.textContent = "Opening " + todo.length + " namespaces: laid out " + i + " of " + todo.length + "\u2026";
          said = performance.now();
        }
        setTimeout(step, 0);
        return;
      }
      line.textContent = "Opening " + todo.length + " namespaces: drawing\u2026";
      // After the next frame has shown the line: the drawing holds the page until it is done. Every namespace the
      // graph has then (one a refresh brought meanwhile is laid out in the drawing).
      requestAnimationFrame(function () {
        setTimeout(function () { if (turn === opening) setCollapsed(state.model.order.slice(), false); }, 0);
      });
    })();
  }

  function setCollapsed(names, shut) {
    opening++; // an opening in progress (openMany) gives way to this one
    var started = performance.now();
    names = names.filter(function (ns) { return state.model.boxes[ns] && !!state.collapsed[ns] !== shut; });
    if (!names.length || !state.cy) {
      if (state.cy) { // nothing to do, but an opening given way to may have left its line
        document.getElementById("cy").removeAttribute("aria-busy");
        status();
      }
      state.ready = {};
      return;
    }
    state.timings = {};
    document.getElementById("graph-tip").hidden = true; // it named what is no longer drawn so
    if (shut) savePositions(); // its nodes' positions, kept for when it opens again
    names.forEach(function (ns) { if (shut) state.collapsed[ns] = true; else delete state.collapsed[ns]; });
    redraw(started, shut ? "collapse" : "expand");
    state.ready = {}; // taken by this drawing, or laid out for an opening given up
    keepInUrl();
  }
  state.expand = function (ns) { setCollapsed([ns], false); };
  state.collapse = function (ns) { setCollapsed([ns], true); };

  function setShowIdle(show) {
    state.showIdle = show;
    if (!state.cy) return;
    applyVisibility(state.cy);
    stackSplitLabels(state.cy);
    updateLod();
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
    if (state.config.asOf) params.set("as_of", state.config.asOf); // a past view: the server's time, as checked
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
        // The server tags the present graph with the versions it is made of (apps/graph/views.py): the same tag for
        // the same query is the graph already drawn, which a refresh need neither read nor patch again.
        var tag = r.ok ? r.headers.get("ETag") : null;
        if (tag && tag === state.drawnTag && asked === state.drawnQuery && state.cy) {
          if (r.body) r.body.cancel(); // (read from the browser's cache, or still downloading if it was dropped)
          return { ok: true, unchanged: true };
        }
        return r.json().then(function (body) { return { ok: r.ok, status: r.status, body: body, tag: tag }; },
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
        if (res.unchanged) {
          state.timings.mode = "unchanged";
        } else {
          state.data = res.body;
          state.drawnQuery = asked;
          state.drawnTag = res.tag;
          showKpisThen(res.body.as_of);
          state.started = started;
          draw(res.body);
          refreshPanel();
        }
        state.checks += 1; // answers read, drawn or found unchanged (data-graph-checked)
        document.body.dataset.graphChecked = String(state.checks);
      })
      .catch(function (err) {
        if (err.name === "AbortError") return;
        error.textContent = "The graph could not be loaded: " + err.message;
        error.hidden = false;
      });
  }
  state.load = load;

  // A past view whose KPIs Prometheus could not give (no data then, or unavailable): said above the graph.
  function showKpisThen(asOf) {
    var banner = document.getElementById("graph-kpis-then");
    if (!banner) return;
    banner.textContent = asOf && asOf.kpis ? "Traffic as of then: " + asOf.kpis +
      ". The configuration of then is drawn without it." : "";
    banner.dataset.kpis = asOf && asOf.kpis ? (asOf.no_data ? "no-data" : "unavailable") : "";
    banner.hidden = !(asOf && asOf.kpis);
  }

  // The page's URL with the form's state and the namespaces opened or closed by hand (other parameters, such as the
  // time window, kept), for links and reloads.
  function keepInUrl() {
    var url = new URLSearchParams(window.location.search);
    ["ns", "find", "hide", "idle", "expand", "collapse"].forEach(function (name) { url.delete(name); });
    query().forEach(function (value, name) { url.append(name, value); });
    if (state.model) {
      state.model.order.forEach(function (ns) {
        if (state.auto && !state.collapsed[ns]) url.append("expand", ns);
        if (!state.auto && state.collapsed[ns]) url.append("collapse", ns);
      });
    }
    var search = url.toString();
    history.replaceState(null, "", window.location.pathname + (search ? "?" + search : ""));
  }

  // -- the keyboard and the table: the same graph without a mouse or without sight -------------------------------
  // The focused graph moves its selection with the arrow keys to the nearest shown node that way (a neighbour
  // first), Home to the first by name; Enter opens the node's page (or a collapsed namespace); Escape clears. Each
  // move is said in #graph-selection (aria-live), and the side panel shows the node as a click would.
  function shownNodes() {
    return state.cy.nodes().filter(function (n) { return !n.hasClass("off") && !isBox(n.data()); });
  }
  function nodeName(d) {
    return d.kind === "namespace" ? "namespace " + d.name : (d.namespace ? d.namespace + "/" : "") + (d.display || d.name);
  }
  function byName(nodes) {
    return nodes.toArray().sort(function (a, b) { return nodeName(a.data()) < nodeName(b.data()) ? -1 : 1; });
  }
  function announce(node) {
    var d = node.data(), shown = function (e) { return !e.hasClass("off"); };
    var into = node.incomers("edge").filter(shown).length, out = node.outgoers("edge").filter(shown).length;
    var text = nodeName(d) + (d.kind && d.kind !== "namespace" ? ", " + d.kind : "") +
      (d.health ? ", " + d.health : "") + ", " + into + " inbound edge" + (into === 1 ? "" : "s") + ", " + out +
      " outbound edge" + (out === 1 ? "" : "s");
    document.getElementById("graph-selection").textContent = "Selected: " + text;
  }
  function selectNode(node) {
    var cy = state.cy;
    cy.elements(":selected").unselect();
    node.select();
    selectedId = node.id();
    showPanel(node);
    announce(node);
    var p = node.renderedPosition();
    if (p.x < 0 || p.y < 0 || p.x > cy.width() || p.y > cy.height()) cy.center(node);
  }
  var DIRECTIONS = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowDown: [0, 1], ArrowUp: [0, -1] };
  // The nearest node within 60 degrees of the direction; the node's neighbours weigh as if at half the distance.
  function toward(from, dir) {
    var p = from.position(), best = null, bestScore = Infinity, near = from.neighborhood("node");
    shownNodes().forEach(function (n) {
      if (n.same(from)) return;
      var q = n.position(), dx = q.x - p.x, dy = q.y - p.y, along = dx * dir[0] + dy * dir[1];
      var dist = Math.sqrt(dx * dx + dy * dy);
      if (along <= 0 || along < dist * 0.5) return;
      var score = dist * (near.contains(n) ? 0.5 : 1);
      if (score < bestScore) { best = n; bestScore = score; }
    });
    return best;
  }
  function onGraphKey(event) {
    if (!state.cy || event.ctrlKey || event.metaKey || event.altKey) return;
    var current = selectedId ? state.cy.getElementById(selectedId) : null;
    if (current && (!current.length || !current.isNode() || current.hasClass("off"))) current = null;
    var ordered = byName(shownNodes());
    if (!ordered.length) return;
    if (DIRECTIONS[event.key]) {
      event.preventDefault();
      var next = current ? toward(current, DIRECTIONS[event.key]) : ordered[0];
      if (next) selectNode(next);
      else announce(current); // nothing that way: say where the selection still is
    } else if (event.key === "Home" || event.key === "End") {
      event.preventDefault();
      selectNode(ordered[event.key === "Home" ? 0 : ordered.length - 1]);
    } else if (event.key === "Enter" && current) {
      event.preventDefault();
      var d = current.data();
      if (current.hasClass("collapsed")) { state.expand(d.name); return; }
      if (typeof d.url === "string" && d.url.charAt(0) === "/" && d.url.charAt(1) !== "/") window.location.assign(d.url);
    } else if (event.key === "Escape" && current) {
      state.cy.elements(":selected").unselect();
      selectedId = null;
      showPanel(null);
      document.getElementById("graph-selection").textContent = "Nothing selected.";
    }
  }

  // The edges the graph shows, as a table (the same data: what the filters hide is left out, a collapsed
  // namespace's edges folded as drawn).
  function protocolOf(d) {
    if (d.protocol) return String(d.protocol).toUpperCase();
    if (d.kind === "split") return "split " + d.split;
    if (d.kind === "aggregate") return "folded (" + d.edges + " edges)";
    if (d.rps !== null && d.rps !== undefined) return "HTTP";
    if (d.tcp_bytes_rate) return "TCP";
    return "–";
  }
  var LOCKS = { mtls: "mTLS", partial: "partial", plain: "no", unknown: "unknown" };
  function fillTable() {
    var view = document.getElementById("graph-table-view");
    if (!view || view.hidden || !state.cy) return;
    var body = view.querySelector("tbody");
    var rows = state.cy.edges().filter(function (e) { return !e.hasClass("off"); }).map(function (e) {
      var d = e.data(), s = e.source().data(), t = e.target().data();
      var success = d.error === null || d.error === undefined ? null : 1 - d.error;
      return [nodeName(s), nodeName(t), protocolOf(d), fmt(d.rps, "rps"), fmt(success, "pct"), fmt(d.p99_ms, "ms"),
        LOCKS[d.lock] || d.lock || "–", d.policy || "–", e.id()];
    });
    rows.sort(function (a, b) { return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0; });
    body.replaceChildren();
    rows.forEach(function (r) {
      var tr = el("tr");
      tr.dataset.edge = r.pop();
      r.forEach(function (text) { tr.appendChild(el("td", text)); });
      body.appendChild(tr);
    });
    if (!rows.length) {
      var empty = el("tr"), cell = el("td", "No edge is shown.");
      cell.colSpan = 8;
      empty.appendChild(cell);
      body.appendChild(empty);
    }
    view.querySelector(".graph-table-count").textContent = rows.length + " edge" + (rows.length === 1 ? "" : "s");
  }
  function toggleTable(button) {
    var view = document.getElementById("graph-table-view");
    view.hidden = !view.hidden;
    button.setAttribute("aria-expanded", String(!view.hidden));
    fillTable();
  }

  // -- side panel, tooltip, click-through -----------------------------------------------------------------------
  var selectedId = null;
  function row(dl, term, value) {
    dl.appendChild(el("dt", term));
    dl.appendChild(el("dd", value));
  }
  function healthCounts(d) {
    var c = d.health_counts || {};
    return ["failing", "degraded", "healthy", "unknown"].filter(function (h) { return c[h]; })
      .map(function (h) { return c[h] + " " + h; }).join(", ") || "–";
  }
  function namespacePanel(panel, d) {
    var shut = !!state.collapsed[d.name];
    panel.appendChild(el("h2", "namespace " + d.name + (shut ? " (collapsed)" : "")));
    var dl = el("dl");
    row(dl, "in the mesh", d.monitored ? "yes (monitored)" : "no");
    row(dl, "nodes", d.members + " (" + d.services + " services, " + d.workloads + " callers, " + d.unknown_peers +
      " unknown peers)");
    row(dl, "health", healthCounts(d));
    row(dl, "inbound (sum)", fmt(d.rps, "rps"));
    row(dl, "5xx", fmt(d.error, "pct"));
    row(dl, "worst p99", fmt(d.p99_ms, "ms"));
    panel.appendChild(dl);
    var button = el("button", shut ? "Expand namespace" : "Collapse namespace", "graph-ns-toggle");
    button.type = "button";
    button.addEventListener("click", function () {
      if (shut) state.expand(d.name); else state.collapse(d.name);
      refreshPanel();
    });
    panel.appendChild(button);
  }
  function endName(ns, name) { return name ? ns + "/" + name : "namespace " + ns; }
  function showPanel(ele) {
    var panel = document.getElementById("graph-panel");
    panel.replaceChildren();
    if (!ele || !ele.length) {
      panel.appendChild(el("p", "Select a service or an edge. Double-click a service to open it; click a collapsed " +
        "namespace to open it.", "hint"));
      return;
    }
    var d = ele.data();
    var dl = el("dl");
    if (ele.isNode() && d.kind === "namespace") {
      namespacePanel(panel, d);
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
      detailRows(dl, d.details);
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
    panel.appendChild(el("h2", endName(d.source_namespace, d.source_name) + " → " +
      endName(d.target_namespace, d.target_name)));
    warningList(panel, d.warnings);
    if (d.kind === "aggregate") {
      panel.appendChild(el("p", d.edges + " edges folded into one (a collapsed namespace): requests, 5xx and bytes " +
        "summed, the worst p99.", "hint"));
    }
    if (d.idle) {
      panel.appendChild(el("p", "Policy-only: the sidecars are configured for this edge (OSM derives that from " +
        "policy) but no request, byte or refusal was measured on it.", "hint"));
    }
    if (d.denied_rps) row(dl, "denied", fmt(d.denied_rps, "rps") + " refused by policy");
    if (d.policy) {
      row(dl, "policy" + (state.config.asOf ? " then" : ""), {
        allowed: "allowed: a TrafficTarget admits the caller's service account (or permissive mode)",
        denied: "denied: no TrafficTarget admits the caller's service account",
        partly: "partly: some of the caller's service accounts are admitted, not all" }[d.policy] || d.policy);
    }
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
    row(dl, d.kind === "aggregate" ? "worst p99" : "p99", fmt(d.p99_ms, "ms"));
    if (d.tcp_bytes_rate !== null) row(dl, "TCP", d.tcp_bytes_rate.toFixed(0) + " B/s");
    if (d.tls_error_rps) row(dl, "TLS errors", fmt(d.tls_error_rps, "rps"));
    detailRows(dl, d.details);
    panel.appendChild(dl);
  }
  // What the server says about an element beyond its KPIs (the policy behind an ingress, egress, retry or rate
  // limit): [term, text] pairs, shown as text.
  function detailRows(dl, details) {
    (details || []).forEach(function (pair) {
      if (Array.isArray(pair) && pair.length === 2) row(dl, String(pair[0]), String(pair[1]));
    });
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
      if (event.target.isNode()) announce(event.target);
      if (event.target.isNode() && event.target.hasClass("collapsed")) state.expand(event.target.data("name"));
      showPanel(cy.getElementById(selectedId));
    });
    cy.on("dbltap", "node", function (event) {
      var url = event.target.data("url");
      if (typeof url === "string" && url.charAt(0) === "/" && url.charAt(1) !== "/") window.location.assign(url);
    });
    cy.on("mouseover", "node", function (event) {
      var d = event.target.data(), text;
      if (d.kind === "namespace") {
        if (!state.collapsed[d.name]) return;
        text = "namespace " + d.name + ": " + d.members + " nodes · " + healthCounts(d) + " · " + fmt(d.rps, "rps") +
          " · 5xx " + fmt(d.error, "pct") + " · worst p99 " + fmt(d.p99_ms, "ms") + "\nclick to open";
      } else {
        text = d.namespace + "/" + d.name + " · " + d.health + ": " + (d.reasons || []).join("; ") +
          ((d.warnings || []).length ? "\n\u26A0 " + d.warnings.join("\n\u26A0 ") : "");
      }
      tip.textContent = text;
      var box = document.getElementById("cy").getBoundingClientRect(), p = event.renderedPosition || { x: 0, y: 0 };
      tip.style.left = (box.left + p.x + 12) + "px";
      tip.style.top = (box.top + p.y + 12) + "px";
      tip.hidden = false;
    });
    cy.on("mouseout", "node", function () { tip.hidden = true; });
    // A box dragged takes its nodes along; a node dragged resizes its box; a collapsed namespace dragged moves the
    // kept positions of its nodes with it, so it opens where it now is.
    var from = {};
    cy.on("grab", "node", function (event) {
      var p = event.target.position();
      from[event.target.id()] = { x: p.x, y: p.y };
    });
    cy.on("drag", "node", function (event) {
      var n = event.target, d = n.data();
      if (d.kind !== "namespace") { fitBoxes(cy, d.namespace); return; }
      if (state.collapsed[d.name] || !from[n.id()]) return;
      var p = n.position(), dx = p.x - from[n.id()].x, dy = p.y - from[n.id()].y;
      from[n.id()] = { x: p.x, y: p.y };
      cy.batch(function () {
        state.model.members[d.name].forEach(function (id) {
          var m = cy.getElementById(id);
          if (m.length) m.shift({ x: dx, y: dy });
        });
      });
    });
    cy.on("dragfree", "node", function (event) {
      var n = event.target, d = n.data(), was = from[n.id()];
      delete from[n.id()];
      if (d.kind === "namespace" && state.collapsed[d.name] && was) {
        var p = n.position(), dx = Math.round(p.x - was.x), dy = Math.round(p.y - was.y);
        state.model.members[d.name].forEach(function (id) {
          var q = state.positions[id];
          if (q) state.positions[id] = [q[0] + dx, q[1] + dy];
        });
      }
      savePositions();
      stackSplitLabels(cy);
      queueLod();
    });
    cy.on("viewport", queueLod);
    cy.on("render", drawLocks);
  }

  // -- padlocks --------------------------------------------------------------------------------------------------
  // Cytoscape draws no image on an edge, so the padlocks go on a canvas over its own, just left of each label (moved
  // right by half the room, so the pair stays centred), after every frame it renders; only on labelled edges (in
  // view, zoomed in).
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
    cy.edges(".has-lock.lod").forEach(function (e) {
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
      ctx.fillStyle = state.lockBg || "#ffffff"; // off the edge's line, like the label's own background
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
    // nodes, collapsed namespaces, names; what is shown only.
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
    shown.nodes(".box").forEach(function (n) {
      var p = n.position(), w = n.data("w"), h = n.data("h");
      add(svg, "rect", { x: p.x - w / 2, y: p.y - h / 2, width: w, height: h, rx: 6, fill: "#eef1f6", stroke: "#aab" });
      add(svg, "text", { x: p.x, y: p.y - h / 2 - 4, "text-anchor": "middle", "font-size": 12,
        "font-weight": "bold" }, n.data("name"));
    });
    shown.edges().forEach(function (e) {
      var s = e.source().position(), t = e.target().position(), d = e.data();
      var color = d.denied_rps ? "#b3261e" : d.kind === "split" ? "#1e6fd9" : d.lock === "mtls" ? "#8b95a1" : "#e07b00";
      var dx = t.x - s.x, dy = t.y - s.y, len = Math.sqrt(dx * dx + dy * dy) || 1;
      var r = e.target().hasClass("collapsed") ? e.target().data("agg_size") / 2 : 12;
      add(svg, "line", { x1: s.x, y1: s.y, x2: t.x - dx / len * r, y2: t.y - dy / len * r, stroke: color,
        "stroke-width": d.kind === "aggregate" ? d.agg_width : 1.5,
        "stroke-dasharray": d.lock === "mtls" && d.kind !== "split" && !d.idle ? "none" : "5,3",
        "marker-end": "url(#arrow)" });
      var icon = e.hasClass("has-lock") ? icons[lockIcon(d.lock)] : "";
      var width = measure.measureText(d.label).width + (icon ? 13 : 0), x = (s.x + t.x) / 2 - width / 2;
      var y = (s.y + t.y) / 2;
      add(svg, "rect", { x: x - 2, y: y - 8, width: width + 4, height: 12, rx: 2, fill: "#fff", "fill-opacity": 0.9 });
      if (icon) add(svg, "image", { href: icon, x: x, y: y - 7.5, width: 10, height: 10 });
      add(svg, "text", { x: x + (icon ? 13 : 0), y: y, "font-size": 10, fill: d.denied_rps ? "#8c1d18" : "#222" },
        d.label);
    });
    shown.nodes(".collapsed").forEach(function (n) {
      var p = n.position(), d = n.data(), r = d.agg_size / 2;
      add(svg, "circle", { cx: p.x, cy: p.y, r: r, fill: COLORS[d.health] || COLORS.unknown, stroke: "#335",
        "stroke-width": 3 });
      d.agg_label.split("\n").forEach(function (line, i) {
        add(svg, "text", { x: p.x, y: p.y + r + 16 + i * 14, "text-anchor": "middle", "font-size": 12,
          "font-weight": i ? "normal" : "bold" }, line);
      });
    });
    shown.nodes().filter(function (n) { return n.data("kind") !== "namespace"; }).forEach(function (n) {
      var p = n.position(), d = n.data();
      add(svg, "circle", { cx: p.x, cy: p.y, r: 11, fill: COLORS[d.health] || COLORS.unknown,
        stroke: d.sidecars === "all" ? "#4a4f55" : "#e07b00", "stroke-width": 2,
        "stroke-dasharray": d.sidecars === "all" ? "none" : "3,2" });
      add(svg, "text", { x: p.x, y: p.y + 25, "text-anchor": "middle", "font-size": 11 }, d.display || d.name);
    });
    return new XMLSerializer().serializeToString(svg);
  };
  // Cytoscape's PNG of the whole graph, every shown label on it, with the padlocks drawn over, as the page shows them.
  function png(done) {
    var cy = state.cy, bb = cy.elements().boundingBox(); // the box cy.png({full: true}) draws
    cy.elements().not(".off").addClass("lod near");
    var uri = cy.png({ output: "base64uri", full: true, bg: "#ffffff", maxWidth: 8000, maxHeight: 8000 });
    var spots = lockSpots(cy, null);
    state.lodCount = state.nearCount = -1; // all of them: updateLod takes the ones out of view off again
    updateLod();
    var img = new Image();
    img.onload = function () {
      var canvas = document.createElement("canvas");
      canvas.width = img.width;
      canvas.height = img.height;
      var ctx = canvas.getContext("2d"), scale = img.width / Math.ceil(bb.w);
      ctx.drawImage(img, 0, 0);
      drawSpots(ctx, spots, function (x, y) {
        return { x: (x - bb.x1) * scale, y: (y - bb.y1) * scale };
      }, scale);
      canvas.toBlob(done, "image/png");
    };
    img.src = uri;
  }
  var actions = {
    fit: function () { fitShown(state.cy); },
    relayout: function () {
      state.positions = {};
      try { localStorage.removeItem(state.key); } catch (e) { /* ignore */ }
      state.timings = {};
      redraw(performance.now());
      fitShown(state.cy);
      updateLod();
    },
    "collapse-all": function () { setCollapsed(state.model.order.slice(), true); },
    "expand-all": function () { openMany(); },
    png: function () { png(function (blob) { download(blob, stamp() + ".png"); }); },
    svg: function () { download(new Blob([state.svg()], { type: "image/svg+xml" }), stamp() + ".svg"); },
    json: function () {
      // What is shown, as drawn: the filters' and the policy-only box's hidden elements are left out; a collapsed
      // namespace is one node and its folded edges are edges of kind "aggregate".
      var cy = state.cy, out = Object.assign({}, state.data), m = state.model;
      out.elements = { nodes: [], edges: [] };
      out.positions = {};
      out.collapsed = m.order.filter(function (ns) { return state.collapsed[ns]; });
      cy.nodes().not(".off").forEach(function (n) {
        var leaf = m.nodes[n.id()];
        out.elements.nodes.push(leaf ? { data: leaf.data, classes: leaf.classes }
          : { data: n.data(), classes: n.classes().join(" ") });
        if (!isBox(n.data())) out.positions[n.id()] = n.position();
      });
      cy.edges().not(".off").forEach(function (e) {
        out.elements.edges.push({ data: e.data(), classes: e.classes().join(" ") });
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
    document.getElementById("cy").addEventListener("keydown", onGraphKey);
    var tableButton = document.getElementById("graph-table-toggle");
    if (tableButton) tableButton.addEventListener("click", function () { if (state.cy) toggleTable(tableButton); });
    form.querySelectorAll("button[data-graph]").forEach(function (button) {
      button.addEventListener("click", function () { if (state.cy) actions[button.dataset.graph](); });
    });
    if (!state.config.asOf) document.body.addEventListener("mb:refresh", load); // the past does not change
    load();
  });
})();
