// Meshboard's own script: no inline handlers anywhere (the CSP forbids them), so behaviour is wired here.
(function () {
  "use strict";

  // Forms marked data-autosubmit submit when a select changes (cluster picker, time window, filters).
  document.addEventListener("change", function (event) {
    var form = event.target.closest && event.target.closest("form[data-autosubmit]");
    if (form && event.target.tagName === "SELECT") form.requestSubmit();
  });

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

  // Charts: <div class="chart" data-series-url=... data-chart=...> drawn with Plotly from JSON we fetch.
  function layout(title, yTitle) {
    return {
      title: { text: title, font: { size: 14 } },
      margin: { l: 55, r: 15, t: 35, b: 35 },
      height: 260,
      xaxis: { type: "date" },
      yaxis: { title: { text: yTitle }, rangemode: "tozero" },
      legend: { orientation: "h" },
    };
  }
  function times(data) {
    return data.timestamps.map(function (t) { return new Date(t * 1000); });
  }
  function draw(el, data) {
    var kind = el.dataset.chart, traces = [], x = times(data), s = data.series || {};
    var spec = {
      requests: { title: "Request rate by response class", y: "req/s", keys: ["rate_2xx", "rate_3xx", "rate_4xx", "rate_5xx"] },
      success: { title: "Success rate (non-5xx)", y: "%", keys: ["success_rate"], percent: true },
      latency: { title: "Latency", y: "ms", keys: ["p50_ms", "p95_ms", "p99_ms"] },
      tcp: { title: "TCP traffic", y: "bytes/s", keys: ["tcp_bytes_sent_rate", "tcp_bytes_received_rate"] },
    }[kind];
    if (!spec) return;
    spec.keys.forEach(function (key) {
      if (!s[key]) return;
      var y = spec.percent ? s[key].map(function (v) { return v === null ? null : v * 100; }) : s[key];
      traces.push({ x: x, y: y, name: (data.labels && data.labels[key]) || key, mode: "lines", connectgaps: false });
    });
    var reason = (data.unavailable || {})[kind];
    var note = el.parentElement.querySelector(".chart-note");
    if (note) note.textContent = reason ? "Not available: " + reason : "";
    window.Plotly.react(el, traces, layout(spec.title, spec.y), { displaylogo: false, responsive: true });
    el.dataset.points = String(traces.reduce(function (n, t) {
      return n + t.y.filter(function (v) { return v !== null; }).length;
    }, 0));
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
          var note = el.parentElement.querySelector(".chart-note");
          if (note) note.textContent = "Metrics unavailable: " + err.message;
        });
      });
  }
  document.addEventListener("DOMContentLoaded", loadCharts);
  document.addEventListener("DOMContentLoaded", function () {
    document.body.addEventListener("mb:refresh", loadCharts);
  });
})();
