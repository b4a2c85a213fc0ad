// Moderation queue: every few seconds ask the server which items still wait, drop the rows that
// someone else decided, add rows that arrived, and update the tab counts. Without this file the
// page works the same with a manual refresh.
(function () {
  "use strict";
  var root = document.querySelector("[data-moderation-queue]");
  if (!root || !window.fetch) {
    return;
  }
  var url = root.getAttribute("data-poll-url");
  var every = (parseInt(root.getAttribute("data-poll-seconds"), 10) || 3) * 1000;
  var table = root.querySelector("[data-table]");
  var tbody = root.querySelector("tbody[data-rows]");
  var empty = root.querySelector("[data-empty]");
  var live = document.getElementById("queue-live");

  function rows() {
    return Array.prototype.slice.call(tbody.querySelectorAll("tr[data-id]"));
  }

  function rowFor(id) {
    return tbody.querySelector('tr[data-id="' + id + '"]');
  }

  function announce(text) {
    if (live && text) {
      live.textContent = text;
    }
  }

  function apply(data) {
    Object.keys(data.counts).forEach(function (kind) {
      var badge = document.querySelector('[data-count="' + kind + '"]');
      if (badge) {
        badge.textContent = data.counts[kind];
      }
    });
    var waiting = data.ids.map(String);
    var gone = [];
    rows().forEach(function (row) {
      if (waiting.indexOf(row.getAttribute("data-id")) === -1) {
        gone.push(row.getAttribute("data-label"));
        row.parentNode.removeChild(row);
      }
    });
    var added = 0;
    waiting.forEach(function (id, index) {
      if (rowFor(id) || !data.rows[id]) {
        return;
      }
      var holder = document.createElement("tbody");
      holder.innerHTML = data.rows[id].trim();
      var row = holder.querySelector("tr");
      if (!row) {
        return;
      }
      var next = null;
      for (var j = index + 1; j < waiting.length && !next; j += 1) {
        next = rowFor(waiting[j]);
      }
      tbody.insertBefore(row, next);
      added += 1;
    });
    var any = waiting.length > 0;
    table.hidden = !any;
    empty.hidden = any;
    var parts = [];
    if (gone.length) {
      parts.push(gone.join(", ") + (gone.length === 1 ? " was" : " were") + " decided by someone else and left the queue.");
    }
    if (added) {
      parts.push(added + " new item" + (added === 1 ? "" : "s") + " arrived.");
    }
    announce(parts.join(" "));
  }

  function poll() {
    if (document.hidden) {
      schedule();
      return;
    }
    var known = rows().map(function (row) { return row.getAttribute("data-id"); }).join(",");
    var sep = url.indexOf("?") === -1 ? "?" : "&";
    fetch(url + sep + "known=" + encodeURIComponent(known), {
      credentials: "same-origin",
      headers: { "Accept": "application/json" }
    }).then(function (response) {
      return response.ok ? response.json() : null;
    }).then(function (data) {
      if (data) {
        apply(data);
      }
    }).catch(function () {
      // A failed poll (network blip, server restart) is retried on the next tick.
    }).then(schedule);
  }

  function schedule() {
    window.setTimeout(poll, every);
  }

  schedule();
})();
