// "n / max" under each long text (answers, descriptions, instructions, the greeting), so a limit is seen before it
// is reached; the browser itself stops typing at maxlength, and the server checks the same limit.
(function () {
  "use strict";
  document.querySelectorAll("textarea[maxlength], input[maxlength][data-char-count]").forEach(function (field) {
    var max = parseInt(field.getAttribute("maxlength"), 10);
    if (!max) return;
    var note = document.createElement("span");
    note.className = "char-count";
    field.insertAdjacentElement("afterend", note);
    function update() {
      note.textContent = field.value.length + " / " + max;
      note.classList.toggle("is-near", field.value.length >= max * 0.9);
    }
    field.addEventListener("input", update);
    update();
  });
})();
