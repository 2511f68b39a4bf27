// The item browser: the header box ticks every item on the page; the bulk form shows (and submits) only the
// fields of the chosen action, so one `value` reaches the server.
(function () {
  "use strict";
  function showFieldsFor(form, action) {
    form.querySelectorAll("[data-for-action]").forEach((element) => {
      const mine = element.dataset.forAction === action;
      if (element.tagName === "LABEL") element.hidden = !mine;
      else element.disabled = !mine;
    });
  }
  document.addEventListener("DOMContentLoaded", () => {
    const tickAll = document.getElementById("tick-all");
    if (tickAll) {
      tickAll.addEventListener("change", () => {
        document.querySelectorAll("input[name=ids][form=bulk-form]").forEach((box) => { box.checked = tickAll.checked; });
      });
    }
    const form = document.getElementById("bulk-form");
    const action = document.getElementById("bulk-action");
    if (form && action) {
      showFieldsFor(form, action.value);
      action.addEventListener("change", () => showFieldsFor(form, action.value));
    }
  });
})();
