// The compare page's charts: every backend of a split on one time axis, weight changes as vertical lines (drawn by
// meshboard.js's helpers, loaded first), each non-baseline backend's weight share as steps.
(function () {
  "use strict";
  var SPECS = {
    rate: { title: "Request rate", y: "req/s", key: "request_rate" },
    success: { title: "Success rate (non-5xx)", y: "%", key: "success_rate", percent: true },
    p50: { title: "p50 latency", y: "ms", key: "p50_ms" },
    p99: { title: "p99 latency", y: "ms", key: "p99_ms" },
    tcp: { title: "TCP bytes sent", y: "bytes/s", key: "tcp_bytes_sent_rate" },
  };

  // Each shown backend's share of the weight over time, as steps on a second axis (0-100 %): Flagger's steps, or
  // anyone's changes. The last point is the window's end, so the line reaches the right edge.
  function stepTraces(steps) {
    if (!steps || !steps.points || steps.points.length < 2) return [];
    return (steps.show || []).map(function (name) {
      return {
        x: steps.points.map(function (p) { return new Date(p.at * 1000); }),
        y: steps.points.map(function (p) { var v = p.percents[name]; return v === undefined ? null : v; }),
        name: name + " weight %", yaxis: "y2", mode: "lines", line: { shape: "hv", dash: "dash", width: 1 },
        hovertemplate: name + " weight %{y:.0f} %<extra></extra>",
      };
    });
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
    var markers = data.markers || [], steps = stepTraces(data.steps);
    traces = traces.concat(steps);
    if (markers.length) traces.push(window.Meshboard.markerTrace(markers));
    var note = el.parentElement.querySelector(".chart-note");
    if (note) note.textContent = reasons.length ? "Not available: " + reasons.join("; ") : "";
    window.Plotly.react(el, traces, window.Meshboard.themed({
      title: { text: spec.title, font: { size: 14 } },
      margin: { l: 55, r: 55, t: 35, b: 55 }, height: 260,
      xaxis: { type: "date" }, yaxis: { title: { text: spec.y }, rangemode: "tozero" },
      yaxis2: {
        title: { text: "weight %" }, overlaying: "y", side: "right", range: [0, 100], showgrid: false,
        tickmode: "linear", tick0: 0, dtick: 25,
      },
      legend: { orientation: "h" }, shapes: window.Meshboard.markerShapes(markers),
    }), { displaylogo: false, responsive: true });
    el.dataset.traces = String(traces.length);
    el.dataset.markers = String(markers.length);
    el.dataset.steps = String(steps.length);
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
