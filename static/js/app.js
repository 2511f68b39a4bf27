// Behaviour shared by every page, wired from data attributes (the Content-Security-Policy allows no inline script).
// data-autosubmit on a <select>: submit its form on change.
// data-confirm="question" on a <form> or a submit button: ask before submitting.
// data-copy-from="#id" on a button: copy that field's value; data-copied names the element showing "copied".
(function () {
  "use strict";
  document.addEventListener("change", (event) => {
    const field = event.target;
    if (field.matches && field.matches("select[data-autosubmit]") && field.form) field.form.requestSubmit();
  });
  document.addEventListener("submit", (event) => {
    const form = event.target;
    const button = event.submitter;
    const question = (button && button.dataset.confirm) || form.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });
  document.addEventListener("click", async (event) => {
    const button = event.target.closest && event.target.closest("button[data-copy-from]");
    if (!button) return;
    const field = document.querySelector(button.dataset.copyFrom);
    try { await navigator.clipboard.writeText(field.value); }
    catch (err) { field.select(); document.execCommand("copy"); }
    const status = document.querySelector(button.dataset.copied);
    if (status) status.textContent = button.dataset.copiedText || "✓";
  });
})();
