// Live SLA countdowns: every <time class="countdown" data-deadline> ticks down each second.
(function () {
  "use strict";
  function text(seconds, overdue) {
    var a = Math.floor(Math.abs(seconds));
    var h = Math.floor(a / 3600);
    var m = Math.floor((a % 3600) / 60);
    var out = (seconds < 0 ? "\u2212" : "") + h + "h " + (m < 10 ? "0" : "") + m + "m";
    return seconds < 0 ? out + " " + overdue : out;
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("time.countdown[data-deadline]").forEach(function (el) {
      var deadline = Date.parse(el.getAttribute("data-deadline"));
      if (isNaN(deadline)) { return; }
      var left = (deadline - now) / 1000;
      el.textContent = text(left, el.getAttribute("data-overdue") || "");
      el.classList.toggle("overdue", left < 0);
      el.classList.toggle("soon", left >= 0 && left < 3600);
    });
  }
  tick();
  setInterval(tick, 1000);
  document.addEventListener("htmx:afterSwap", tick);
})();

// Offline: the service worker (engineer_sw.js) keeps a copy of each engineer page opened
// online; the note says when a page is such a copy, and a form is not sent while offline
// (an action must reach the desk with the version the page was rendered at, or not at all).
(function () {
  "use strict";
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/console/engineer/sw.js", { scope: "/console/engineer" })
      .catch(function () { /* no offline copies: the pages work online as before */ });
  }
  function show() {
    var note = document.getElementById("offline-note");
    if (note) { note.hidden = navigator.onLine; }
    var refused = document.getElementById("offline-refused");
    if (refused && navigator.onLine) { refused.hidden = true; }
  }
  window.addEventListener("online", show);
  window.addEventListener("offline", show);
  document.addEventListener("submit", function (event) {
    if (navigator.onLine) { return; }
    event.preventDefault();
    event.stopImmediatePropagation();
    var refused = document.getElementById("offline-refused");
    if (refused) { refused.hidden = false; refused.focus(); }
  }, true);
  show();
})();
