// The compose form: the categories (and the severity) of the chosen kind of message, and an SMS counter.
// A help only: notification_validate, on the server, decides what is accepted.
(function () {
  "use strict";
  var kind = document.getElementById("id_notifier");
  var category = document.getElementById("id_category");
  if (kind && category && kind.dataset.kinds) {
    var kinds = JSON.parse(kind.dataset.kinds);
    var severityRow = document.querySelector(".field-severity");
    var filter = function () {
      var allowed = (kinds[kind.value] || {}).categories || [];
      var first = null;
      Array.prototype.forEach.call(category.options, function (option) {
        var ok = allowed.indexOf(option.value) !== -1;
        option.hidden = !ok;
        option.disabled = !ok;
        if (ok && first === null) { first = option.value; }
      });
      if (allowed.indexOf(category.value) === -1 && first !== null) { category.value = first; }
      if (severityRow) {
        var needed = !!(kinds[kind.value] || {}).severity;
        severityRow.hidden = !needed && !severityRow.classList.contains("errors");
      }
    };
    kind.addEventListener("change", filter);
    filter();
  }

  // Counted as channels_app.mixins.sms_count counts: GSM-7 (160 in one segment, 153 each when split,
  // the extension table's characters take two) unless one character is outside it, then UCS-2 (70, then 67).
  var GSM7 = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿" +
    "abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€";
  var EXTENDED = "^{}\\[~]|€";
  function count(text) {
    var chars = Array.from(text);
    var gsm = chars.every(function (c) { return GSM7.indexOf(c) !== -1; });
    var units = gsm ? chars.reduce(function (n, c) { return n + (EXTENDED.indexOf(c) !== -1 ? 2 : 1); }, 0)
                    : text.length;  // UTF-16 code units: a character outside the BMP takes two
    var single = gsm ? 160 : 70, multi = gsm ? 153 : 67;
    var segments = units === 0 ? 0 : (units <= single ? 1 : Math.ceil(units / multi));
    return {characters: chars.length, segments: segments, encoding: gsm ? "GSM-7" : "UCS-2"};
  }
  Array.prototype.forEach.call(document.querySelectorAll(".fn-sms-counter"), function (counter) {
    var title = document.getElementById(counter.dataset.title);
    var body = document.getElementById(counter.dataset.body);
    if (!title || !body) { return; }
    var update = function () {
      var text = title.value.trim() || body.value.trim() ? title.value.trim() + ": " + body.value.trim() : "";
      var c = count(text);
      ["characters", "segments", "encoding"].forEach(function (part) {
        counter.querySelector('[data-part="' + part + '"]').textContent = c[part];
      });
    };
    title.addEventListener("input", update);
    body.addEventListener("input", update);
    update();
  });
}());
