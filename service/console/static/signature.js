// The customer's signature pad: pointer strokes on a canvas, posted as a PNG data URL.
// Works with a finger, a pen or a mouse (Pointer Events); the form refuses to submit a
// blank pad, and the server checks again (engineer_signature.py). "Type the name" is the
// keyboard-only way: the typed name and a ticked statement, no pad.
(function () {
  "use strict";
  function setup() {
    var canvas = document.getElementById("signature-pad");
    var form = document.getElementById("sign-off-form");
    if (!canvas || !form) { return; }
    var field = document.getElementById("signature-data");
    var empty = document.getElementById("pad-empty");
    var ctx = canvas.getContext("2d");
    var drawing = false;
    var inked = false;
    var last = null;

    function clear() {
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      inked = false;
      field.value = "";
    }
    function point(event) {
      var box = canvas.getBoundingClientRect();
      return {
        x: (event.clientX - box.left) * (canvas.width / box.width),
        y: (event.clientY - box.top) * (canvas.height / box.height)
      };
    }
    function line(from, to) {
      ctx.strokeStyle = "#111111";
      ctx.lineWidth = 3;
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(from.x, from.y);
      ctx.lineTo(to.x, to.y);
      ctx.stroke();
      inked = true;
    }
    canvas.addEventListener("pointerdown", function (event) {
      event.preventDefault();
      drawing = true;
      last = point(event);
      if (canvas.setPointerCapture) { canvas.setPointerCapture(event.pointerId); }
    });
    canvas.addEventListener("pointermove", function (event) {
      if (!drawing) { return; }
      event.preventDefault();
      var next = point(event);
      line(last, next);
      last = next;
    });
    function stop() { drawing = false; last = null; }
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);
    canvas.addEventListener("pointerleave", stop);
    // Touch scrolling would steal the strokes on a phone.
    canvas.style.touchAction = "none";

    // Typed (keyboard-only) signing: the pad is hidden and the statement must be ticked.
    var typed = document.getElementById("sign-typed");
    var consent = document.getElementById("sign-consent");
    function mode() {
      var isTyped = typed && typed.checked;
      document.getElementById("drawn-signature").hidden = isTyped;
      document.getElementById("typed-signature").hidden = !isTyped;
      if (consent) { consent.required = isTyped; }
      if (isTyped) { empty.hidden = true; }
    }
    form.querySelectorAll('input[name="signature_mode"]').forEach(function (radio) {
      radio.addEventListener("change", mode);
    });
    mode();

    document.getElementById("signature-clear").addEventListener("click", clear);
    form.addEventListener("submit", function (event) {
      if (typed && typed.checked) {
        field.value = "";
        return;
      }
      if (!inked) {
        event.preventDefault();
        empty.hidden = false;
        return;
      }
      empty.hidden = true;
      field.value = canvas.toDataURL("image/png");
    });
    clear();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setup);
  } else {
    setup();
  }
})();
