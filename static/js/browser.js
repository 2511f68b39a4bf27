// The item browser: the header box ticks every item on the page; the bulk form shows (and submits) only the
// fields of the chosen action, so one `value` reaches the server. Keys: j / k move through the rows, x ticks
// the current row, o or Enter opens it, / jumps to the text search.
(function () {
  "use strict";
  function typing(target) {
    return target && ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
  }
  function rows() {
    return Array.from(document.querySelectorAll("#browser-table tbody tr[data-item-id]"));
  }
  function move(offset) {
    const all = rows();
    if (!all.length) return;
    const current = all.findIndex((row) => row.classList.contains("browser-current"));
    const next = Math.max(0, Math.min(all.length - 1, current < 0 ? 0 : current + offset));
    all.forEach((row) => row.classList.remove("browser-current"));
    all[next].classList.add("browser-current");
    all[next].scrollIntoView({ block: "nearest" });
  }
  function onKey(event) {
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    const current = document.querySelector("#browser-table tr.browser-current");
    if (event.key === "j") move(1);
    else if (event.key === "k") move(-1);
    else if (event.key === "x" && current) {
      const box = current.querySelector("input[name=ids]");
      if (box) box.checked = !box.checked;
    } else if ((event.key === "o" || event.key === "Enter") && current) {
      const link = current.querySelector("a[href]");
      if (link) window.location.assign(link.href);
    } else if (event.key === "/") {
      const search = document.querySelector("#browser-filters input[name=q]");
      if (search) search.focus();
    } else return;
    event.preventDefault();
  }
  function showFieldsFor(form, action) {
    form.querySelectorAll("[data-for-action]").forEach((element) => {
      const mine = element.dataset.forAction === action;
      if (element.tagName === "LABEL") element.hidden = !mine;
      else element.disabled = !mine;
    });
  }
  document.addEventListener("keydown", onKey);
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
