// The compare page's charts: every backend of a split on one time axis, weight changes as vertical lines.
(function () {
  "use strict";
  var SPECS = {
    rate: { title: "Request rate", y: "req/s", key: "request_rate" },
    success: { title: "Success rate (non-5xx)", y: "%", key: "success_rate", percent: true },
    p50: { title: "p50 latency", y: "ms", key: "p50_ms" },
    p99: { title: "p99 latency", y: "ms", key: "p99_ms" },
    tcp: { title: "TCP bytes sent", y: "bytes/s", key: "tcp_bytes_sent_rate" },
  };

  function markerShapes(markers) {
    return markers.map(function (m) {
      return {
        type: "line", xref: "x", yref: "paper", x0: new Date(m.at * 1000), x1: new Date(m.at * 1000), y0: 0, y1: 1,
        line: { width: 1, dash: m.outside ? "dot" : "solid", color: m.outside ? "#b45309" : "#555" },
      };
    });
  }

  function markerTrace(markers) {
    // An invisible point on each line carries the hover text (shapes have none).
    return {
      x: markers.map(function (m) { return new Date(m.at * 1000); }),
      y: markers.map(function () { return 0; }),
      text: markers.map(function (m) { return m.text; }),
      mode: "markers", name: "weight changes", hoverinfo: "text", marker: { symbol: "triangle-up", size: 9 },
    };
  }

  function draw(el, data) {
    var spec = SPECS[el.dataset.chart];
    if (!spec) return;
    var traces = [], reasons = [];
    Object.keys(data.backends).forEach(function (name) {
      var d = data.backends[name], values = (d.series || {})[spec.key];
      var missing = (d.unavailable || {})["*"] || (d.unavailable || {})[spec.key];
      if (missing) reasons.push(name + ": " + missing);
      if (!values) return;
      traces.push({
        x: d.timestamps.map(function (t) { return new Date(t * 1000); }),
        y: spec.percent ? values.map(function (v) { return v === null ? null : v * 100; }) : values,
        name: name, mode: "lines", connectgaps: false,
      });
    });
    var markers = data.markers || [];
    if (markers.length) traces.push(markerTrace(markers));
    var note = el.parentElement.querySelector(".chart-note");
    if (note) note.textContent = reasons.length ? "Not available: " + reasons.join("; ") : "";
    window.Plotly.react(el, traces, {
      title: { text: spec.title, font: { size: 14 } },
      margin: { l: 55, r: 30, t: 35, b: 55 }, height: 260,
      xaxis: { type: "date" }, yaxis: { title: { text: spec.y }, rangemode: "tozero" },
      legend: { orientation: "h" }, shapes: markerShapes(markers),
    }, { displaylogo: false, responsive: true });
    el.dataset.traces = String(traces.length);
    el.dataset.markers = String(markers.length);
  }

  function load() {
    var charts = document.querySelectorAll(".compare-chart[data-series-url]");
    if (!charts.length || !window.Plotly) return;
    fetch(charts[0].dataset.seriesUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (data) { charts.forEach(function (el) { draw(el, data); }); })
      .catch(function (err) {
        charts.forEach(function (el) {
          var note = el.parentElement.querySelector(".chart-note");
          if (note) note.textContent = "Metrics unavailable: " + err.message;
        });
      });
  }
  document.addEventListener("DOMContentLoaded", load);
})();
