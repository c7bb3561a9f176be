// Names each autocomplete box (select2, drawn by the admin's autocomplete.js) after its field's label:
// select2's text box has no name of its own. Watches the page, as select2 draws its boxes after load.
(function () {
  "use strict";
  function name() {
    document.querySelectorAll("select.admin-autocomplete").forEach(function (select) {
      var label = document.querySelector('label[for="' + select.id + '"]');
      var shown = document.getElementById("select2-" + select.id + "-container");
      if (label && shown && !shown.hasAttribute("aria-label")) {
        shown.setAttribute("aria-label", label.textContent.replace(/:\s*$/, "").trim());
      }
    });
  }
  new MutationObserver(name).observe(document.documentElement, {childList: true, subtree: true});
})();
