// The live preview: as the postbacks form changes, ask the portal for the URL a sample
// conversion of each subscribed event would produce (same origin, the form's own CSRF token)
// and show them, one line per event.
"use strict";
// A running test: fetch the page again every 2 s and put its run (steps, verdict) in place.
function followRun() {
  var running = document.getElementById("running");
  if (!running) { return; }
  setTimeout(function () {
    fetch(location.href, { credentials: "same-origin" })
      .then(function (answer) { return answer.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("run");
        if (fresh) { document.getElementById("run").replaceWith(fresh); }
        followRun();
      });
  }, Number(running.dataset.follow));
}

document.addEventListener("DOMContentLoaded", function () {
  followRun();
  var form = document.getElementById("postbacks-form");
  if (!form) { return; }
  var timer = null;
  function refresh() {
    fetch(form.dataset.preview, { method: "POST", body: new URLSearchParams(new FormData(form)), credentials: "same-origin" })
      .then(function (answer) { return answer.ok ? answer.json() : []; })
      .then(function (lines) {
        form.querySelectorAll("output").forEach(function (out) { out.textContent = ""; });
        lines.forEach(function (line) {
          var out = document.getElementById("pb-" + line.index + "-preview");
          var text = (line.event ? line.event + ": " : "") + (line.url || line.problem || "");
          if (out) { out.textContent += (out.textContent ? "\n" : "") + text; }
        });
      });
  }
  form.addEventListener("input", function (event) {
    // A preset picked: say what it needs (the option's own hint, written by the page).
    if (event.target.classList.contains("preset")) {
      document.getElementById(event.target.id.replace(/preset$/, "hint")).textContent = event.target.selectedOptions[0].dataset.hint;
    }
    clearTimeout(timer); timer = setTimeout(refresh, 250);
  });
  refresh();
});
