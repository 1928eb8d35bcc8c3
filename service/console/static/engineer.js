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
