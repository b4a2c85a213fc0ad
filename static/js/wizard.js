// Campaign wizard: live GSM-7 / UCS-2 character and segment counter for the message text.
// Same algorithm as services/segments.py; both are tested against static/js/segment-vectors.json.
// No inline script (CSP): this file finds its elements by data attributes. Runs in node too (module.exports) for the shared-vector test.
(function (root) {
  "use strict";

  var BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
              "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var EXTENSION = "^{}\\[~]|€\f";
  var SINGLE = { "GSM-7": 160, "UCS-2": 70 };
  var MULTI = { "GSM-7": 153, "UCS-2": 67 };

  function count(text) {
    var chars = Array.from(text || "");
    var gsm = chars.every(function (c) { return BASIC.indexOf(c) >= 0 || EXTENSION.indexOf(c) >= 0; });
    var encoding = gsm ? "GSM-7" : "UCS-2";
    var sizes = chars.map(function (c) {
      if (gsm) { return EXTENSION.indexOf(c) >= 0 ? 2 : 1; }
      return c.codePointAt(0) > 0xFFFF ? 2 : 1;
    });
    var units = sizes.reduce(function (a, b) { return a + b; }, 0);
    var single = SINGLE[encoding], multi = MULTI[encoding];
    if (units === 0) {
      return { encoding: encoding, characters: 0, units: 0, segments: 0, per_segment: single, remaining: single };
    }
    if (units <= single) {
      return { encoding: encoding, characters: chars.length, units: units, segments: 1,
               per_segment: single, remaining: single - units };
    }
    var parts = 1, used = 0;
    sizes.forEach(function (size) {
      if (used + size > multi) { parts += 1; used = 0; }
      used += size;
    });
    return { encoding: encoding, characters: chars.length, units: units, segments: parts,
             per_segment: multi, remaining: multi - used };
  }

  function describe(info) {
    if (info.units === 0) { return "Empty — type the message."; }
    var unitName = info.encoding === "GSM-7" ? "characters" : "UCS-2 units";
    var text = info.encoding + " · " + info.units + " " + unitName + " · " + info.segments +
               " SMS part" + (info.segments === 1 ? "" : "s") + " (" + info.per_segment + " per part) · " +
               info.remaining + " left in this part";
    if (info.units !== info.characters && info.encoding === "GSM-7") {
      text += " — ^ { } [ ] ~ \\ | € count as two";
    }
    if (info.encoding === "UCS-2") {
      text += " — a character outside the GSM alphabet switched the message to UCS-2";
    }
    return text;
  }

  if (typeof module !== "undefined" && module.exports) {
    module.exports = { count: count, describe: describe };
    return;
  }
  root.McSegments = { count: count, describe: describe };

  function wireCounter(textarea) {
    var out = document.getElementById(textarea.getAttribute("data-segment-counter"));
    if (!out) { return; }
    var update = function () {
      var info = count(textarea.value.replace(/\r\n?/g, "\n"));
      out.textContent = describe(info);
      out.classList.toggle("warn", info.segments > 1 || info.encoding === "UCS-2");
      out.classList.toggle("error", info.segments > 10);
    };
    textarea.addEventListener("input", update);
    update();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("textarea[data-segment-counter]").forEach(wireCounter);
  });
})(typeof window !== "undefined" ? window : this);
