// Live Pulse: refreshes the Overview's in-flight / delivery-rate / OTP latency / Core figures every 5 s from
// the small JSON endpoint named by data-pulse-url (no inline script; CSP script-src 'self').
(function () {
  "use strict";
  var INTERVAL = 5000;

  function fmt(n) { return Number(n || 0).toLocaleString("en-US"); }

  function set(root, name, text) {
    var el = root.querySelector('[data-pulse="' + name + '"]');
    if (el && el.textContent !== text) { el.textContent = text; }
  }

  function render(root, p) {
    set(root, "inflight", fmt(p.inflight));
    set(root, "delivery_rate", p.delivery_rate === null ? "—" : p.delivery_rate.toFixed(1) + " %");
    set(root, "minute", "last minute: " + fmt(p.sent_last_minute) + " sent, " + fmt(p.delivered_last_minute) +
        " delivered, " + fmt(p.failed_last_minute) + " failed");
    var t = p.trigger_latency;
    if (t) {
      set(root, "trigger_p95", t.p95_ms === null ? "—" : t.p95_ms + " ms");
      set(root, "trigger_detail", t.count ? "p95 · p50 " + t.p50_ms + " ms · " + fmt(t.count) +
          " Trigger numbers in the last minute" : "no Trigger numbers in the last minute");
    }
    if (p.core) {
      var core = root.querySelector('[data-pulse="core"]');
      if (core) {
        var badge = document.createElement("span");
        badge.className = "badge " + (p.core.ok ? "badge-ok" : "badge-down");
        badge.textContent = p.core.ok ? "up" : (p.core.status === "unreachable" ? "down" : p.core.status);
        core.replaceChildren(badge);
      }
      set(root, "core_detail", (p.core.latency_ms !== null ? "answered in " + p.core.latency_ms + " ms" : "") +
          (p.core.schema_match === false ? " · schema mismatch" : ""));
    }
    set(root, "at", "as of " + (p.at_local || p.at));
    root.classList.remove("stale");
  }

  function start(root) {
    var url = root.getAttribute("data-pulse-url");
    var busy = false;
    function tick() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
        .then(function (p) { render(root, p); })
        .catch(function () { root.classList.add("stale"); })
        .then(function () { busy = false; });
    }
    window.setInterval(tick, INTERVAL);
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-pulse-url]"), start);
  });
})();
