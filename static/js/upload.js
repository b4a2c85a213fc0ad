// Recipient upload widget: sends the file as the RAW request body (so the server never parses a
// multipart form), shows the transfer progress, then polls the status endpoint for the ingest.
// Without this file the widget is a plain multipart form that still works (≤ 50 MB).
(function () {
  "use strict";

  function csrfToken(form) {
    var input = form.querySelector("input[name=csrf_token]");
    return input ? input.value : "";
  }

  function fmt(n) {
    return Number(n || 0).toLocaleString();
  }

  function summary(s) {
    if (s.state === "queued") { return "File received; waiting for a worker…"; }
    var counts = fmt(s.lines) + " lines, " + fmt(s.accepted) + " accepted, " + fmt(s.duplicates) +
      " duplicates, " + fmt(s.rejected) + " rejected, " + fmt(s.stop_listed) + " stop-listed.";
    if (s.state === "running") { return "Reading recipients: " + s.percent + "% — " + counts; }
    if (s.state === "done") { return "Done: " + counts; }
    return "The upload failed: " + (s.error || "unknown error") + " No recipient from this file was kept.";
  }

  function setup(widget) {
    var form = widget.querySelector(".upload-form");
    var box = widget.querySelector(".upload-progress");
    var bar = box.querySelector("progress");
    var status = box.querySelector(".upload-status");
    var errorsBox = widget.querySelector(".upload-errors");
    var maxBytes = parseInt(widget.getAttribute("data-max-bytes"), 10) || 0;

    function show(text, percent) {
      box.hidden = false;
      status.textContent = text;
      if (percent !== undefined) { bar.value = percent; bar.textContent = percent + "%"; }
    }

    function showErrors(errors) {
      if (!errors || !errors.length) { return; }
      var body = errorsBox.querySelector("tbody");
      body.textContent = "";
      errors.forEach(function (e) {
        var tr = document.createElement("tr");
        [e.line === null ? "—" : String(e.line), e.reason, e.text || ""].forEach(function (value, i) {
          var td = document.createElement("td");
          if (i === 0) { td.className = "num"; }
          if (i === 2 && value) { var code = document.createElement("code"); code.textContent = value; td.appendChild(code); }
          else { td.textContent = value; }
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
      errorsBox.hidden = false;
    }

    function poll(url) {
      fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          if (s.error && s.error.message) { show(s.error.message); return; }
          show(summary(s), s.percent);
          showErrors(s.errors);
          if (s.state === "queued" || s.state === "running") {
            window.setTimeout(function () { poll(url); }, 1500);
          } else if (s.state === "done" || s.state === "failed") {
            // The page then shows the server's view: the new count, or the form again after a failure.
            window.setTimeout(function () { window.location.reload(); }, 1200);
          }
        })
        .catch(function () { window.setTimeout(function () { poll(url); }, 4000); });
    }

    if (widget.getAttribute("data-status-url")) { poll(widget.getAttribute("data-status-url")); }
    if (!form || !window.XMLHttpRequest) { return; }

    form.addEventListener("submit", function (event) {
      var input = form.querySelector("input[type=file]");
      var file = input.files && input.files[0];
      if (!file) { return; }  // let the browser say the field is required
      event.preventDefault();
      if (!/\.(csv|txt)$/i.test(file.name)) {
        show("“" + file.name + "” is not a .csv or .txt file. Export the list as CSV (UTF-8) or plain text.", 0);
        return;
      }
      if (maxBytes && file.size > maxBytes) {
        show("The file is " + (file.size / 1048576).toFixed(1) + " MB; the browser limit is " +
             Math.round(maxBytes / 1048576) + " MB. Split it, or upload it through the API (up to 1 GB).", 0);
        return;
      }
      var button = form.querySelector("button[type=submit]");
      button.disabled = true;
      var xhr = new XMLHttpRequest();
      xhr.open("POST", widget.getAttribute("data-upload-url"));
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("X-CSRFToken", csrfToken(form));
      xhr.setRequestHeader("X-Filename", encodeURIComponent(file.name));
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) {
          var pct = Math.floor(e.loaded * 100 / e.total);
          show("Uploading " + file.name + ": " + pct + "% of " + (e.total / 1048576).toFixed(1) + " MB", pct);
        }
      });
      xhr.addEventListener("load", function () {
        var data = {};
        try { data = JSON.parse(xhr.responseText); } catch (ignore) { data = {}; }
        if (xhr.status === 202 && data.status_url) {
          show("File received; reading recipients…", 0);
          poll(data.status_url);
        } else {
          button.disabled = false;
          show((data.error && data.error.message) || ("The upload failed (HTTP " + xhr.status + ")."), 0);
        }
      });
      xhr.addEventListener("error", function () {
        button.disabled = false;
        show("The connection broke during the upload; try again.", 0);
      });
      show("Uploading " + file.name + "…", 0);
      xhr.send(file);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll(".upload-widget"), setup);
  });
})();
