// The device file's telemetry plot: min/avg/max buckets from /console/devices/<id>/series,
// drawn with uPlot; the form picks the metric and the window without leaving the page.
(function () {
  "use strict";
  var plot = null;

  function draw(box, caption, data) {
    if (plot) { plot.destroy(); plot = null; }
    box.textContent = "";
    if (!data.t.length) {
      caption.textContent = caption.getAttribute("data-empty") || "No readings in this window.";
      return;
    }
    var width = Math.max(280, box.clientWidth || 320);
    var opts = {
      width: width,
      height: 220,
      series: [
        {},
        { label: "min", stroke: "#1f5fa8", width: 1 },
        { label: "avg " + data.unit, stroke: "#111111", width: 2 },
        { label: "max", stroke: "#a13a00", width: 1 }
      ],
      axes: [{}, { label: data.unit }]
    };
    plot = new uPlot(opts, [data.t, data.min, data.avg, data.max], box);
    caption.textContent = data.metric + " (" + data.unit + "): " + data.t.length + " intervals";
  }

  function load(form, box, caption) {
    var params = new URLSearchParams(new FormData(form));
    fetch(box.getAttribute("data-series") + "?" + params.toString(), {
      credentials: "same-origin",
      headers: { "Accept": "application/json" }
    }).then(function (answer) {
      if (!answer.ok) { throw new Error(String(answer.status)); }
      return answer.json();
    }).then(function (data) {
      draw(box, caption, data);
    }).catch(function (error) {
      caption.textContent = "Telemetry could not be loaded (" + error.message + ").";
    });
  }

  function setup() {
    var form = document.getElementById("plot-form");
    var box = document.getElementById("device-plot");
    var caption = document.getElementById("plot-caption");
    if (!form || !box || typeof uPlot === "undefined") { return; }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      load(form, box, caption);
    });
    load(form, box, caption);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setup);
  } else {
    setup();
  }
})();
