// The Watch page's progress bar: polls the notification's progress while fan-out and sending run.
(function () {
  "use strict";
  var bar = document.getElementById("fanout-progress");
  if (!bar || bar.dataset.final === "1") { return; }
  var percent = document.getElementById("progress-percent");
  var detail = document.getElementById("progress-detail");
  function poll() {
    fetch(bar.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (p) {
        bar.value = p.percent;
        percent.textContent = p.percent + "%";
        detail.textContent = p.done + " of " + p.total + " deliveries done" + (p.fanned_out ? "" : ", still fanning out");
        if (p.final) {
          window.location.reload();  // the tables below are final too now
        } else {
          window.setTimeout(poll, p.status === "scheduled" ? 30000 : 1000);  // nothing moves before its time
        }
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 1000);
})();
