// mnistlite drawing page: draw on the canvas, see live class probabilities.
// Plain JS, no libraries. The canvas is sent as a PNG to /api/predict (the
// same preprocessing as `mnistlite predict`); one request at a time, the
// latest drawing is always the last one sent.
(function () {
  "use strict";
  var pad = document.getElementById("pad");
  var ctx = pad.getContext("2d");
  var seen = document.getElementById("seen").getContext("2d");
  var result = document.getElementById("result");
  var digitEl = document.getElementById("digit");
  var confEl = document.getElementById("confidence");
  var statusEl = document.getElementById("status");
  var barsEl = document.getElementById("bars");
  var LINE = 18;  // px on a 280 px canvas: about MNIST's stroke width once the digit is scaled to 20 px

  var classes = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
  var bars = [];
  function buildBars() {
    barsEl.textContent = "";
    bars = classes.map(function (label, i) {
      var bar = document.createElement("div");
      bar.className = "bar";
      bar.setAttribute("role", "listitem");
      bar.dataset.label = label;
      bar.dataset.prob = "0";
      var pct = document.createElement("span");
      pct.className = "pct";
      var fill = document.createElement("div");
      fill.className = "fill";
      bar.appendChild(pct);
      bar.appendChild(fill);
      barsEl.appendChild(bar);
      return { el: bar, fill: fill, pct: pct };
    });
    var old = document.querySelector(".labels");
    if (old) old.remove();
    var labels = document.createElement("div");
    labels.className = "labels";
    classes.forEach(function (label) {
      var s = document.createElement("span");
      s.textContent = label;
      labels.appendChild(s);
    });
    barsEl.insertAdjacentElement("afterend", labels);
  }

  function showProbs(probs, top) {
    bars.forEach(function (b, i) {
      var p = probs ? probs[i] : 0;
      b.fill.style.height = (100 * p).toFixed(1) + "%";
      b.pct.textContent = probs && p >= 0.005 ? Math.round(100 * p) + "%" : "";
      b.el.dataset.prob = p.toFixed(4);
      b.el.classList.toggle("top", probs !== null && i === top);
    });
  }

  function showSeen(pixels) {
    var img = seen.createImageData(28, 28);
    for (var i = 0; i < 784; i++) {
      var v = pixels ? pixels[i] : 0;
      img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v;
      img.data[4 * i + 3] = 255;
    }
    seen.putImageData(img, 0, 0);
  }

  function resetResult(message) {
    digitEl.textContent = "?";
    digitEl.dataset.digit = "";
    confEl.textContent = message || "draw to predict";
    showProbs(null, -1);
    showSeen(null);
  }

  // --- drawing ---------------------------------------------------------------
  var drawing = false, last = null, hasInk = false;
  function clearPad() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
    hasInk = false;
    generation++;
    dirty = false;
    statusEl.textContent = "";
    resetResult();
    updatePending();
  }
  function pos(e) {
    var r = pad.getBoundingClientRect();
    return { x: (e.clientX - r.left) * pad.width / r.width, y: (e.clientY - r.top) * pad.height / r.height };
  }
  function stroke(a, b) {
    ctx.strokeStyle = "#fff";
    ctx.fillStyle = "#fff";
    ctx.lineWidth = LINE;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    if (a.x === b.x && a.y === b.y) {
      ctx.arc(a.x, a.y, LINE / 2, 0, 2 * Math.PI);
      ctx.fill();
    } else {
      ctx.moveTo(a.x, a.y);
      ctx.lineTo(b.x, b.y);
      ctx.stroke();
    }
    hasInk = true;
  }
  function start(p) { drawing = true; last = p; stroke(p, p); schedule(); }
  function move(p) { if (!drawing) return; stroke(last, p); last = p; schedule(); }
  function end() { if (!drawing) return; drawing = false; schedule(); }

  if (window.PointerEvent) {
    pad.addEventListener("pointerdown", function (e) {
      if (e.button !== undefined && e.button > 0) return;
      e.preventDefault();
      try { pad.setPointerCapture(e.pointerId); } catch (err) { /* synthetic events */ }
      start(pos(e));
    });
    pad.addEventListener("pointermove", function (e) {
      if (!drawing) return;
      e.preventDefault();
      var events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
      if (!events.length) events = [e];
      events.forEach(function (ev) { move(pos(ev)); });
    });
    ["pointerup", "pointercancel"].forEach(function (t) { pad.addEventListener(t, end); });
  } else {  // older browsers: mouse and touch events
    pad.addEventListener("mousedown", function (e) { e.preventDefault(); start(pos(e)); });
    window.addEventListener("mousemove", function (e) { move(pos(e)); });
    window.addEventListener("mouseup", end);
    pad.addEventListener("touchstart", function (e) { e.preventDefault(); start(pos(e.touches[0])); }, { passive: false });
    pad.addEventListener("touchmove", function (e) { e.preventDefault(); move(pos(e.touches[0])); }, { passive: false });
    pad.addEventListener("touchend", function (e) { e.preventDefault(); end(); }, { passive: false });
    pad.addEventListener("touchcancel", end);
  }
  document.getElementById("clear").addEventListener("click", clearPad);

  // --- predicting ------------------------------------------------------------
  var inflight = false, dirty = false, timer = null, generation = 0;
  function updatePending() {
    result.dataset.pending = (inflight || dirty || timer !== null) ? "1" : "0";
  }
  function schedule() {
    dirty = true;
    if (!inflight && timer === null) timer = setTimeout(function () { timer = null; send(); }, 40);
    updatePending();
  }
  function send() {
    if (!dirty) { updatePending(); return; }
    dirty = false;
    if (!hasInk) { updatePending(); return; }
    inflight = true;
    updatePending();
    var gen = generation;
    pad.toBlob(function (blob) {
      fetch("/api/predict?pixels=1", { method: "POST", headers: { "Content-Type": "image/png" }, body: blob })
        .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, status: r.status, body: body }; }); })
        .then(function (r) {
          if (gen !== generation) return;  // cleared meanwhile: stale answer
          if (r.ok) {
            statusEl.textContent = "";
            var d = r.body;
            digitEl.textContent = d.label;
            digitEl.dataset.digit = String(d.digit);
            confEl.textContent = (100 * d.prob).toFixed(1) + "% sure \u00b7 " + d.ms.toFixed(1) + " ms on the server";
            showProbs(d.probs, d.digit);
            showSeen(d.pixels);
          } else if (r.status === 422) {
            resetResult("no digit yet: draw a bigger one");
          } else {
            statusEl.textContent = "error " + r.status + ": " + (r.body && r.body.detail || "request failed");
          }
        })
        .catch(function (err) {
          if (gen === generation) statusEl.textContent = "cannot reach the server: " + err;
        })
        .then(function () {
          inflight = false;
          if (dirty) send(); else updatePending();
        });
    }, "image/png");
  }

  // --- model info ------------------------------------------------------------
  fetch("/api/info").then(function (r) { return r.json(); }).then(function (info) {
    if (info.classes && info.classes.length) { classes = info.classes; buildBars(); showProbs(null, -1); }
    var parts = [info.model, info.params !== null ? info.params.toLocaleString("en-US") + " parameters" : null,
                 info.test_acc !== null ? info.test_acc.toFixed(2) + "% test accuracy" : "test accuracy unknown",
                 info.backend];
    var el = document.getElementById("model-info");
    el.textContent = parts.filter(Boolean).join(" \u00b7 ");
    el.dataset.params = info.params === null ? "" : String(info.params);
    el.dataset.testAcc = info.test_acc === null ? "" : String(info.test_acc);
    document.body.dataset.ready = "1";
  }).catch(function (err) { statusEl.textContent = "cannot load model info: " + err; });

  buildBars();
  clearPad();
})();
