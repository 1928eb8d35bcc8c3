// The KPI page's bar chart: failures per device-year by model, drawn with uPlot's bars.
(function () {
  "use strict";
  function setup() {
    var box = document.getElementById("kpi-plot");
    if (!box || typeof uPlot === "undefined") { return; }
    var data = JSON.parse(document.getElementById(box.getAttribute("data-plot")).textContent);
    if (!data.models.length) { return; }
    var xs = data.models.map(function (_, i) { return i; });
    var ys = data.per_device_year.map(function (v) { return v === null ? 0 : v; });
    var opts = {
      width: Math.max(280, box.clientWidth || 320),
      height: 220,
      scales: { x: { time: false, range: [-0.5, xs.length - 0.5] } },
      series: [
        {},
        { label: "failures / device-year", fill: "#5b8fd0", stroke: "#1f5fa8",
          paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false } }
      ],
      axes: [
        { splits: function () { return xs; },
          values: function (_, splits) { return splits.map(function (i) { return data.models[i] || ""; }); } },
        {}
      ]
    };
    new uPlot(opts, [xs, ys], box);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setup);
  } else {
    setup();
  }
})();
