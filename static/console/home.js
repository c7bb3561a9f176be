// The console home's "Sending now": polls the sends running now and moves their progress bars;
// when a send starts or ends the page reloads, so the other panels (last sends, needs action) follow.
(function () {
  "use strict";
  var panel = document.getElementById("running");
  if (!panel) { return; }
  var shown = panel.dataset.ids ? panel.dataset.ids.split(",") : [];

  function describe(p) {
    if (!p.total && !p.fanned_out) { return panel.dataset.textWaiting; }
    return panel.dataset.textDone.replace("{done}", p.done).replace("{total}", p.total)
      + (p.fanned_out ? "" : panel.dataset.textFanning);
  }

  function poll() {
    if (document.hidden) { window.setTimeout(poll, 5000); return; }
    fetch(panel.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (data) {
        var ids = data.running.map(function (p) { return String(p.id); });
        if (ids.join(",") !== shown.join(",")) {
          window.location.reload();  // a send started or ended: every panel changes
          return;
        }
        data.running.forEach(function (p) {
          var row = panel.querySelector('tr[data-id="' + p.id + '"]');
          if (!row) { return; }
          row.querySelector("progress").value = p.percent;
          row.querySelector(".percent").textContent = p.percent + "%";
          row.querySelector(".detail").textContent = describe(p);
        });
        window.setTimeout(poll, shown.length ? 1500 : 15000);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, shown.length ? 1000 : 15000);
})();
