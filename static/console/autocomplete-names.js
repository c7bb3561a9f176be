// Gives each autocomplete box (select2, drawn by the admin's autocomplete.js) the name of its field's label,
// which select2 does not: screen readers then announce "owner" instead of an unnamed combo box.
(function () {
  "use strict";
  function name() {
    document.querySelectorAll("select.admin-autocomplete").forEach(function (select) {
      var label = document.querySelector('label[for="' + select.id + '"]');
      var box = select.parentNode.querySelector(".select2-selection");
      if (!label || !box) { return; }
      var text = label.textContent.replace(/:\s*$/, "").trim();
      box.removeAttribute("aria-labelledby");
      box.setAttribute("aria-label", text);
      var shown = box.querySelector(".select2-selection__rendered");
      if (shown) { shown.setAttribute("aria-label", text); }
    });
  }
  window.addEventListener("load", name);
  document.addEventListener("change", name);  // select2 draws its box again when a person is chosen
})();
