// Live pages over server-sent events: the job page's live part is replaced by each `fragment` until the job has
// ended; a jobs list's rows are replaced by each `row` until `end`.
(function () {
  "use strict";
  if (!window.EventSource) return;
  var live = document.getElementById("live");
  if (live) {
    var ended = function () {
      var state = live.querySelector("[data-terminal]");
      return state !== null && state.getAttribute("data-terminal") === "true";
    };
    if (!ended()) {
      var source = new EventSource(live.getAttribute("data-events"));
      source.addEventListener("fragment", function (event) {
        live.innerHTML = event.data;
        if (ended()) source.close();
      });
    }
  }
  var table = document.querySelector("[data-row-events]");
  if (table) {
    var rows = new EventSource(table.getAttribute("data-row-events"));
    rows.addEventListener("row", function (event) {
      var parsed = document.createElement("template");
      parsed.innerHTML = event.data.trim();
      var row = parsed.content.firstElementChild;
      var old = row && document.getElementById(row.id);
      if (old) old.replaceWith(row);
    });
    rows.addEventListener("end", function () { rows.close(); });
  }
})();
