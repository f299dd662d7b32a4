// The cluster switcher for many clusters (templates/base.html): its own file, loaded only where the switcher is.
(function () {
  "use strict";

  // The switcher for many clusters, a text field with a <datalist>: focusing it empties it, so the list offers every
  // cluster and filters as one types (the current cluster stays as the placeholder); picking a name from the list
  // switches at once, Enter switches to what was typed, and a field left empty gets the current cluster back (so the
  // URL keeps naming it). Typing a name that begins another one does not switch until Enter.
  document.addEventListener("DOMContentLoaded", function () {
    var field = document.querySelector("input[data-switch-cluster]");
    if (!field || !field.list) return;
    var current = field.value;
    var names = Array.prototype.map.call(field.list.options, function (o) { return o.value; });
    field.placeholder = current;
    var restore = function () { if (!field.value.trim()) field.value = current; };
    field.addEventListener("focus", function () { field.value = ""; });
    field.addEventListener("blur", restore);
    field.form.addEventListener("submit", restore);
    field.addEventListener("input", function (event) {
      // A pick from the list comes without typing: no inputType, or a replacement of the whole text.
      var picked = !event.inputType || event.inputType === "insertReplacementText";
      if (picked && names.indexOf(field.value) !== -1 && field.value !== current) field.form.requestSubmit();
    });
  });
})();
