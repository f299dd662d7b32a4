// Meshboard's own script: no inline handlers anywhere (the CSP forbids them), so behaviour is wired here.
(function () {
  "use strict";

  // Forms marked data-autosubmit submit when a select changes (cluster picker, time window, filters).
  document.addEventListener("change", function (event) {
    var form = event.target.closest && event.target.closest("form[data-autosubmit]");
    if (form && event.target.tagName === "SELECT") form.requestSubmit();
  });

  // The view (time range, cluster) lives in the URL: a page reached without it gets it written in, so a copied URL
  // opens the same view in a fresh browser. Other parameters of the URL are kept.
  document.addEventListener("DOMContentLoaded", function () {
    var view = document.body.dataset.viewQuery;
    if (!view || !window.history.replaceState) return;
    var url = new URL(window.location.href);
    if (url.searchParams.has("window") || url.searchParams.has("start")) return;
    new URLSearchParams(view).forEach(function (value, key) {
      if (!url.searchParams.has(key)) url.searchParams.set(key, value);
    });
    window.history.replaceState(window.history.state, "", url.toString());
  });
  // Zooming a chart (drag across it) shows that range on the whole page, in the URL; a double click goes back.
  function zoomTo(event) {
    var url = new URL(window.location.href);
    if (event["xaxis.range[0]"] !== undefined) {
      // Plotly gives the range as local-time strings ("2026-12-01 10:00:00.5"), or as given when set by a script.
      var toDate = function (v) { return typeof v === "number" ? new Date(v) : new Date(String(v).replace(" ", "T")); };
      var from = toDate(event["xaxis.range[0]"]), to = toDate(event["xaxis.range[1]"]);
      if (isNaN(from) || isNaN(to)) return;
      url.searchParams.delete("window");
      url.searchParams.set("start", String(Math.floor(from.getTime() / 1000)));
      url.searchParams.set("end", String(Math.ceil(to.getTime() / 1000)));
    } else if (event["xaxis.autorange"] && url.searchParams.has("start")) {
      url.searchParams.delete("start");
      url.searchParams.delete("end");
    } else {
      return;
    }
    window.location.assign(url.toString());
  }

  // The refresh control: every poll interval, fire "mb:refresh" on <body>; widgets listen with
  // hx-trigger="mb:refresh from:body". "paused" stops it; the choice survives page loads.
  var timer = null;
  function applyRefresh(select) {
    if (timer) clearInterval(timer);
    timer = null;
    localStorage.setItem("mb-refresh", select.value);
    if (select.value === "off") return;
    var seconds = Math.max(5, parseInt(select.dataset.interval, 10) || 15);
    timer = setInterval(function () {
      if (!document.hidden && window.htmx) window.htmx.trigger(document.body, "mb:refresh");
    }, seconds * 1000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var select = document.getElementById("refresh");
    if (!select) return;
    if (localStorage.getItem("mb-refresh") === "off") select.value = "off";
    select.addEventListener("change", function () { applyRefresh(select); });
    applyRefresh(select);
  });

  // The colour scheme: the user's choice (data-theme on <html>, written by the server), else the system's. Charts
  // and the graph take their colours from the stylesheet's custom properties, and redraw in place on "mb:themechange".
  var systemDark = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  function isDark() {
    var chosen = document.documentElement.dataset.theme;
    return chosen ? chosen === "dark" : !!(systemDark && systemDark.matches);
  }
  function themeChanged() {
    document.dispatchEvent(new CustomEvent("mb:themechange", { detail: { dark: isDark() } }));
  }
  if (systemDark && systemDark.addEventListener) systemDark.addEventListener("change", themeChanged);
  // The toggle went through htmx: the server stored the choice and answered with an "mb:theme" event naming it.
  document.addEventListener("mb:theme", function (event) {
    var theme = event.detail && event.detail.theme;
    if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
    else delete document.documentElement.dataset.theme;
    document.querySelectorAll(".theme-switch button[name=theme]").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.value === theme));
    });
    themeChanged();
  });
  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }
  // A chart's colours as Plotly layout keys ("font.color", "xaxis.gridcolor"...), for Plotly.relayout and, unflattened,
  // for a new layout: the page's background, text and grid, in either scheme.
  function chartColours() {
    var text = cssVar("--text"), grid = cssVar("--chart-grid"), bg = cssVar("--chart-bg");
    var keys = { paper_bgcolor: bg, plot_bgcolor: bg, "font.color": text };
    ["xaxis", "yaxis", "yaxis2"].forEach(function (axis) {
      keys[axis + ".gridcolor"] = grid;
      keys[axis + ".zerolinecolor"] = grid;
      keys[axis + ".linecolor"] = grid;
    });
    return keys;
  }
  function themed(look) {
    var keys = chartColours();
    Object.keys(keys).forEach(function (key) {
      var path = key.split("."), target = look;
      if (path.length === 2 && !look[path[0]] && path[0] === "yaxis2") return; // only charts that have a second axis
      for (var i = 0; i < path.length - 1; i++) target = target[path[i]] = target[path[i]] || {};
      target[path[path.length - 1]] = keys[key];
    });
    return look;
  }
  document.addEventListener("mb:themechange", function () {
    if (!window.Plotly) return;
    var keys = chartColours();
    document.querySelectorAll(".js-plotly-plot").forEach(function (el) {
      var update = Object.assign({}, keys);
      if (!(el.layout && el.layout.yaxis2)) Object.keys(update).forEach(function (k) { if (k.indexOf("yaxis2.") === 0) delete update[k]; });
      window.Plotly.relayout(el, update);
    });
  });

  // Charts: <div class="chart" data-series-url=... data-chart=...> drawn with Plotly from JSON we fetch.
  function layout(title, yTitle) {
    return themed({
      title: { text: title, font: { size: 14 } },
      margin: { l: 55, r: 30, t: 35, b: 55 },
      height: 260,
      xaxis: { type: "date" },
      yaxis: { title: { text: yTitle }, rangemode: "tozero" },
      legend: { orientation: "h" },
    });
  }
  var NAMES = {
    rate_2xx: "2xx", rate_4xx: "4xx", rate_5xx: "5xx", success_rate: "success",
    p50_ms: "p50", p95_ms: "p95", p99_ms: "p99",
    tcp_bytes_sent_rate: "sent", tcp_bytes_received_rate: "received", passthrough_rate: "passthrough",
  };
  function times(data) {
    return data.timestamps.map(function (t) { return new Date(t * 1000); });
  }
  var SPECS = {
    requests: { title: "Request rate by response class", y: "req/s", keys: ["rate_2xx", "rate_4xx", "rate_5xx"] },
    success: { title: "Success rate (non-5xx)", y: "%", keys: ["success_rate"], percent: true },
    latency: { title: "Latency", y: "ms", keys: ["p50_ms", "p95_ms", "p99_ms"] },
    tcp: { title: "TCP traffic", y: "bytes/s", keys: ["tcp_bytes_sent_rate", "tcp_bytes_received_rate"] },
    passthrough: { title: "Sent outside its routes (egress passthrough)", y: "conn/s", keys: ["passthrough_rate"] },
  };
  // Weight changes on a chart: a vertical line each (dotted and amber when made outside Meshboard), and an invisible
  // point on each line carrying the hover text (shapes have none). The compare page's charts use these too.
  function markerShapes(markers) {
    return markers.map(function (m) {
      return {
        type: "line", xref: "x", yref: "paper", x0: new Date(m.at * 1000), x1: new Date(m.at * 1000), y0: 0, y1: 1,
        line: { width: 1, dash: m.outside ? "dot" : "solid", color: m.outside ? "#b45309" : cssVar("--text-muted") },
      };
    });
  }
  function markerTrace(markers) {
    return {
      x: markers.map(function (m) { return new Date(m.at * 1000); }),
      y: markers.map(function () { return 0; }),
      text: markers.map(function (m) { return m.text; }),
      mode: "markers", name: "weight changes", hoverinfo: "text",
      marker: { symbol: "triangle-up", size: 9, color: markers.map(function (m) { return m.outside ? "#b45309" : cssVar("--text-muted"); }) },
    };
  }
  window.Meshboard = { markerShapes: markerShapes, markerTrace: markerTrace, themed: themed, isDark: isDark, cssVar: cssVar };

  function draw(el, data) {
    var kind = el.dataset.chart, traces = [], x = times(data), s = data.series || {};
    var spec = SPECS[kind];
    if (!spec) return;
    spec.keys.forEach(function (key) {
      if (!s[key]) return;
      var y = spec.percent ? s[key].map(function (v) { return v === null ? null : v * 100; }) : s[key];
      traces.push({ x: x, y: y, name: NAMES[key] || key, mode: "lines", connectgaps: false });
    });
    var missing = data.unavailable || {};
    // "*": nothing could be drawn (Prometheus failed); else the first series of this chart that cannot be.
    var reason = missing["*"] || spec.keys.map(function (key) { return missing[key]; }).filter(Boolean)[0];
    var note = el.parentElement.querySelector(".chart-note");
    var points = traces.reduce(function (n, t) {
      return n + t.y.filter(function (v) { return v !== null; }).length;
    }, 0);
    el.dataset.points = String(points);
    if (!points) {
      // Unknown is never drawn as zero: no empty axis, a sentence saying why there is nothing.
      if (note) note.textContent = "";
      empty(el, spec.title, reason || "Prometheus holds no samples of these series in this window.");
      return;
    }
    if (note) note.textContent = reason ? "Not available: " + reason : "";
    if (el.classList.contains("chart-empty")) { el.classList.remove("chart-empty"); el.textContent = ""; }
    var markers = data.markers || [], look = layout(spec.title, spec.y);
    if (markers.length) { traces.push(markerTrace(markers)); look.shapes = markerShapes(markers); }
    el.dataset.markers = String(markers.length);
    window.Plotly.react(el, traces, look, { displaylogo: false, responsive: true });
    if (!el.dataset.zoomable) { el.dataset.zoomable = "1"; el.on("plotly_relayout", zoomTo); }
  }
  function empty(el, title, why) {
    if (window.Plotly && el.data) window.Plotly.purge(el);
    el.textContent = "";
    el.classList.add("chart-empty");
    var heading = document.createElement("strong");
    heading.textContent = title;
    var text = document.createElement("p");
    text.className = "no-data";
    text.textContent = "No data: " + why;
    el.appendChild(heading);
    el.appendChild(text);
  }
  function loadCharts() {
    var charts = document.querySelectorAll(".chart[data-series-url]");
    if (!charts.length || !window.Plotly) return;
    var url = charts[0].dataset.seriesUrl;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (data) { charts.forEach(function (el) { draw(el, data); }); })
      .catch(function (err) {
        charts.forEach(function (el) {
          el.dataset.points = "0";
          empty(el, (SPECS[el.dataset.chart] || {}).title || "", "the chart data could not be loaded (" + err.message + ").");
        });
      });
  }
  document.addEventListener("DOMContentLoaded", loadCharts);

  // The weight form: each row shows the share its weight implies (SMI weights are relative). In percent mode the
  // weights are percentages summing to 100: editing one row leaves locked rows alone and spreads the rest evenly.
  function weightInputs(form) {
    return Array.prototype.slice.call(form.querySelectorAll(".weight-row input[type=number]"));
  }
  function showShares(form) {
    var inputs = weightInputs(form);
    var values = inputs.map(function (i) { var v = parseInt(i.value, 10); return isNaN(v) || v < 0 ? 0 : v; });
    var total = values.reduce(function (a, b) { return a + b; }, 0);
    inputs.forEach(function (input, k) {
      var cell = input.closest("tr").querySelector(".pct");
      if (cell) cell.textContent = total ? (values[k] * 100 / total).toFixed(1) + "%" : "–";
    });
  }
  function spread(form, changed) {
    var inputs = weightInputs(form);
    var fixed = 0, free = [];
    inputs.forEach(function (input) {
      var locked = input.closest("tr").querySelector("input.lock").checked;
      var value = Math.max(0, Math.min(100, parseInt(input.value, 10) || 0));
      if (input === changed) { input.value = value; fixed += value; }
      else if (locked) fixed += value;
      else free.push(input);
    });
    var rest = Math.max(0, 100 - fixed);
    free.forEach(function (input, k) {
      input.value = Math.floor(rest / free.length) + (k < rest % free.length ? 1 : 0);
    });
  }
  document.addEventListener("input", function (event) {
    var form = event.target.closest && event.target.closest("form[data-weights]");
    if (!form || event.target.type !== "number") return;
    var mode = form.querySelector("#percent-mode");
    if (mode && mode.checked) spread(form, event.target);
    showShares(form);
  });
  document.addEventListener("change", function (event) {
    if (event.target.id !== "percent-mode") return;
    var form = event.target.closest("form[data-weights]");
    form.classList.toggle("percent", event.target.checked);
    if (event.target.checked) {
      // Convert the current relative weights to whole percentages that sum to 100.
      var inputs = weightInputs(form);
      var values = inputs.map(function (i) { return Math.max(0, parseInt(i.value, 10) || 0); });
      var total = values.reduce(function (a, b) { return a + b; }, 0) || 1;
      var pct = values.map(function (v) { return Math.floor(v * 100 / total); });
      var short = 100 - pct.reduce(function (a, b) { return a + b; }, 0);
      for (var k = 0; k < short; k++) pct[k % pct.length] += 1;
      inputs.forEach(function (input, k) { input.value = pct[k]; });
    }
    showShares(form);
  });
  function initWeights() {
    document.querySelectorAll("form[data-weights]").forEach(showShares);
  }
  document.addEventListener("DOMContentLoaded", initWeights);
  document.addEventListener("htmx:afterSwap", initWeights);
  document.addEventListener("DOMContentLoaded", function () {
    document.body.addEventListener("mb:refresh", loadCharts);
  });
})();
