// The Watch page, live: polls the notification's status (status.json) while it is scheduled or running and
// redraws the header, the progress bar, the per-channel table, the reasons, the failures and the actions.
// Every text comes from the server in the viewer's language; nothing here is inline (the CSP stays strict).
(function () {
  "use strict";
  var bar = document.getElementById("fanout-progress");
  if (!bar || bar.dataset.final === "1") { return; }

  function byId(id) { return document.getElementById(id); }
  function setText(id, text) { var el = byId(id); if (el) { el.textContent = text; } }
  function cell(tag, text, attrs) {
    var el = document.createElement(tag);
    el.textContent = text;
    Object.keys(attrs || {}).forEach(function (name) { el.setAttribute(name, attrs[name]); });
    return el;
  }
  function fillBody(table, rows, emptyColumns) {
    var body = table && table.tBodies[0];
    if (!body || !rows.length) { return; }  // keep the "none yet" row until there is something to show
    body.replaceChildren.apply(body, rows);
  }
  function header(table, labels) {
    var head = table && table.tHead && table.tHead.rows[0];
    if (!head) { return; }
    var first = head.cells[0];
    head.replaceChildren.apply(head, [first].concat(labels.map(function (label) {
      return cell("th", label, {scope: "col"});
    })));
  }

  function draw(s) {
    bar.value = s.percent;
    bar.dataset.state = s.state;
    setText("progress-percent", s.percent + "%");
    setText("progress-sentence", s.sentence);
    setText("reached", s.reached);
    setText("audience", s.audience);
    var status = byId("watch-status");
    if (status) { status.textContent = s.status_label; status.className = "fn-status fn-status-" + s.status; }

    var channels = byId("channel-table");
    fillBody(channels, s.channels.map(function (row) {
      var tr = document.createElement("tr");
      tr.className = "channel-" + row.key + (row.level ? " fn-rung" : "");
      tr.appendChild(cell("th", row.label, {scope: "row"}));
      row.cells.forEach(function (n) { tr.appendChild(cell("td", n)); });
      tr.appendChild(cell("td", row.total));
      return tr;
    }));

    var reasons = byId("reason-table");
    if (s.reasons.rows.length) {
      header(reasons, s.reasons.columns.map(function (column) { return column[1]; }));
      fillBody(reasons, s.reasons.rows.map(function (row) {
        var tr = document.createElement("tr");
        tr.className = "reason-" + row.code;
        tr.appendChild(cell("th", row.label, {scope: "row"}));
        row.counts.forEach(function (n) { tr.appendChild(cell("td", n)); });
        return tr;
      }));
    }

    fillBody(byId("failed-table"), s.failed.map(function (d) {
      var tr = document.createElement("tr"), who = document.createElement("td"), link = cell("a", d.name, {href: d.person_url});
      who.appendChild(link);
      who.appendChild(document.createTextNode(" (" + d.username + ")"));
      tr.appendChild(who);
      [d.channel, d.attempts, d.failed_at, d.error].forEach(function (text) { tr.appendChild(cell("td", text)); });
      return tr;
    }));

    [["act-retry", s.actions.retry], ["act-cancel", s.actions.cancel], ["act-resend", s.actions.resend]]
      .forEach(function (pair) { var button = byId(pair[0]); if (button) { button.hidden = !pair[1]; } });
  }

  // Held: scheduled for later, or awaiting a second person's approval. Nothing moves until that changes.
  function held(state) { return state === "scheduled" || state === "awaiting"; }
  var heldAs = held(bar.dataset.state) ? bar.dataset.state : null;
  function poll() {
    fetch(bar.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (s) {
        if (s.final || (heldAs && s.state !== heldAs)) {
          window.location.reload();  // every part of the page is final (or it started): draw it whole
          return;
        }
        draw(s);
        window.setTimeout(poll, held(s.state) ? 30000 : 1000);  // nothing moves before its time
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 1000);
})();

// The check-in roll call: answers keep arriving after the alert is sent, so it is refreshed for as long as
// the page is open (the part above stops once the notification is final).
(function () {
  "use strict";
  var section = document.getElementById("roll-call");
  if (!section) { return; }

  function item(person) {
    var li = document.createElement("li"), link = document.createElement("a");
    link.href = person.person_url;
    link.textContent = person.name;
    li.appendChild(link);
    li.appendChild(document.createTextNode(" (" + person.username + ")"));
    if (person.phone) {
      var tel = document.createElement("a");
      tel.href = "tel:" + person.phone;
      tel.textContent = person.phone;
      li.appendChild(document.createTextNode(" — "));
      li.appendChild(tel);
    }
    if (person.answered_at) {
      li.appendChild(document.createTextNode(" — “" + person.answer + "”, " + person.answered_at));
    }
    return li;
  }

  function draw(roll) {
    var sentence = document.getElementById("roll-call-sentence");
    if (sentence) { sentence.textContent = roll.sentence; }
    roll.groups.forEach(function (group) {
      var count = document.getElementById("roll-call-" + group.key + "-count"),
          list = document.getElementById("roll-call-" + group.key);
      if (count) { count.textContent = group.count; }
      if (list) {
        var items = group.people.map(item);
        if (group.more) { var more = document.createElement("li"); more.textContent = group.more; items.push(more); }
        list.replaceChildren.apply(list, items);
      }
    });
  }

  function poll() {
    fetch(section.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (s) {
        if (s.roll_call) { draw(s.roll_call); }
        window.setTimeout(poll, 3000);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 3000);
})();
