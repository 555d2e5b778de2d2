// Live pages. Over server-sent events: a job or batch page's live part is replaced by each `fragment` until the job
// has ended or the batch completed (the keyboard's place kept); a jobs list's rows are replaced by each `row` until
// `end`. By polling: the batches list's table is fetched again every `data-poll-ms` until every batch on it has
// completed. A filter form leaves its empty fields out of the address.
(function () {
  "use strict";
  var filters = document.querySelector("form.filters");
  if (filters) {
    filters.addEventListener("formdata", function (event) {  // a short address: only the filters given
      var empty = [];
      event.formData.forEach(function (value, name) { if (value === "") empty.push(name); });
      empty.forEach(function (name) { event.formData.delete(name); });
    });
  }
  var polled = document.querySelector("[data-poll]");
  if (polled && window.fetch) {
    var completed = function () { return polled.querySelector('[data-completed="false"]') === null; };
    var every = parseInt(polled.getAttribute("data-poll-ms"), 10) || 1000;
    var poll = function () {
      fetch(polled.getAttribute("data-poll"), {credentials: "same-origin", headers: {Accept: "text/html"}})
        .then(function (answer) {
          if (answer.status === 429) {
            var wait = parseInt(answer.headers.get("Retry-After"), 10) || 5;
            setTimeout(poll, wait * 1000);
            return;
          }
          if (!answer.ok || answer.redirected) return;  // logged out, or the batch is gone: stop
          return answer.text().then(function (html) {
            var focused = polled.contains(document.activeElement) ? document.activeElement.id : "";
            polled.innerHTML = html;
            var again = focused && document.getElementById(focused);
            if (again) again.focus();  // the keyboard's place survives the refresh
            if (!completed()) setTimeout(poll, every);
          });
        })
        .catch(function () { setTimeout(poll, every * 5); });
    };
    if (!completed()) setTimeout(poll, every);
  }
  if (!window.EventSource) return;
  var live = document.getElementById("live");
  if (live && live.hasAttribute("data-events")) {
    var ended = function () {
      return live.querySelector('[data-terminal="true"], [data-completed="true"]') !== null;
    };
    if (!ended()) {
      var source = new EventSource(live.getAttribute("data-events"));
      source.addEventListener("fragment", function (event) {
        var focused = live.contains(document.activeElement) ? document.activeElement.id : "";
        live.innerHTML = event.data;
        var again = focused && document.getElementById(focused);
        if (again) again.focus();
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
