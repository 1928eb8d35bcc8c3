// vigil console: draws evidence plots (uPlot) in pages and swapped-in fragments. No inline JS:
// plot data sit in data-plot attributes as JSON (htmx drops <script> blocks it swaps in).
(function () {
  "use strict";

  function draw(root) {
    if (typeof uPlot === "undefined") return;
    root.querySelectorAll("[data-plot]").forEach(function (el) {
      if (el.dataset.drawn) return;
      var data = JSON.parse(el.dataset.plot);
      var width = Math.max(240, Math.min(640, el.clientWidth || 640));
      var zone = el.dataset.zone || "UTC";
      new uPlot({
        width: width,
        height: 160,
        // The axis in the site's time zone, like every other time on the page.
        tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), zone); },
        series: [{}, { label: data.metric, stroke: "#8a1c14", width: 2 }],
        axes: [{}, {}],
      }, [data.x, data.y], el);
      el.dataset.drawn = "1";
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSettle", function (e) { draw(e.target); });
  // The live indicator says when the feed is down (it reconnects by itself).
  document.addEventListener("htmx:sseOpen", function () { setLive(true); });
  document.addEventListener("htmx:sseError", function () { setLive(false); });
  function setLive(up) {
    document.body.dataset.live = up ? "1" : "0";  // also what tests wait for
    var el = document.getElementById("live-status");
    if (el) el.dataset.up = up ? "1" : "0";
  }
})();
