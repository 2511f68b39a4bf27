// Annotator workspace: focus and timing. The server renders every panel; this file turns keys (through the shared
// SceneKeys layer) into form submits (htmx swaps the next panel in) and measures display-to-submit time.
(function () {
  "use strict";

  var panel = document.getElementById("ws-panel");
  if (!panel) return;
  var help = document.getElementById("ws-help");
  var shownAt = performance.now();
  var focusIndex = 0;
  var busy = false;

  function labels() {
    return Array.prototype.slice.call(panel.querySelectorAll(".ws-label"));
  }

  function showDefinition(key) {
    panel.querySelectorAll(".ws-def").forEach(function (node) {
      node.hidden = node.getAttribute("data-def-for") !== key;
    });
  }

  function setFocus(index, moveDomFocus) {
    var buttons = labels();
    if (!buttons.length) return;
    focusIndex = (index + buttons.length) % buttons.length;
    buttons.forEach(function (button, i) {
      button.classList.toggle("focused", i === focusIndex);
      button.setAttribute("aria-pressed", i === focusIndex ? "true" : "false");
    });
    if (moveDomFocus) buttons[focusIndex].focus();
    showDefinition(buttons[focusIndex].getAttribute("data-key"));
  }

  // A new item is on screen: restart the clock, focus the suggestion (or the first label).
  function onPanelShown() {
    busy = false;
    shownAt = performance.now();
    var item = document.getElementById("ws-item");
    var suggested = item ? item.getAttribute("data-suggested") : "";
    var start = 0;
    labels().forEach(function (button, i) {
      if (suggested && button.getAttribute("data-key") === suggested) start = i;
    });
    setFocus(start, false);
    // htmx gives focus back to the element with the same id after a swap: the new item starts in key mode.
    if (document.activeElement && document.activeElement.id === "ws-pick") document.activeElement.blur();
    picker();
  }

  function submitLabel(key) {
    var form = document.getElementById("ws-label-form");
    if (!form || busy) return;
    busy = true;
    form.elements.label.value = key;
    form.elements.time_ms.value = String(Math.round(performance.now() - shownAt));
    post(form);
  }

  // htmx.ajax rather than triggering the form: a key pressed right after a swap may come before htmx has
  // processed the new form's attributes, and the request must not be lost.
  function post(form) {
    htmx.ajax("POST", form.getAttribute("hx-post"), { source: form, target: panel, swap: "innerHTML" }).catch(
      function () {
        busy = false;
      }
    );
  }

  function openSkip() {
    var form = document.getElementById("ws-skip-form");
    if (!form) return;
    form.hidden = false;
    document.getElementById("ws-skip-reason").focus();
  }

  function closeSkip() {
    var form = document.getElementById("ws-skip-form");
    if (form) form.hidden = true;
  }

  function undo() {
    var form = document.getElementById("ws-undo-form");
    if (form && !busy) {
      busy = true;
      post(form);
    }
  }

  function picker() {
    var input = document.getElementById("ws-pick");
    if (!input) return null;
    if (!input.sceneclfPicker) input.sceneclfPicker = new SceneKeys.Picker(input, submitLabel);
    return input.sceneclfPicker;
  }

  // `e` opens or folds the examples of the label whose definition is shown.
  function toggleExamples() {
    var shown = panel.querySelector(".ws-def:not([hidden]) details.ws-examples");
    if (shown) shown.open = !shown.open;
  }

  function confirmFocused() {
    var buttons = labels();
    if (!buttons.length) return false;
    var focused = buttons.indexOf(document.activeElement);
    submitLabel(buttons[focused >= 0 ? focused : focusIndex].getAttribute("data-key"));
  }

  SceneKeys.bind({
    help: help,
    picker: picker,
    hotkeys: function () {
      return SceneKeys.hotkeysIn(panel.querySelector(".ws-label-grid"));
    },
    onLabel: submitLabel,
    keys: {
      s: openSkip,
      u: undo,
      e: toggleExamples,
      Enter: confirmFocused,
      ArrowRight: function () {
        setFocus(focusIndex + 1, true);
      },
      ArrowDown: function () {
        setFocus(focusIndex + 1, true);
      },
      ArrowLeft: function () {
        setFocus(focusIndex - 1, true);
      },
      ArrowUp: function () {
        setFocus(focusIndex - 1, true);
      },
      Escape: closeSkip,
    },
  });

  // Escape in the skip reason closes the skip form (the shared handler leaves inputs alone).
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && event.target.id === "ws-skip-reason") closeSkip();
  });

  panel.addEventListener("click", function (event) {
    var button = event.target.closest(".ws-label");
    if (button) {
      submitLabel(button.getAttribute("data-key"));
    } else if (event.target.closest("[data-ws-skip-open]")) {
      openSkip();
    } else if (event.target.closest("[data-ws-skip-cancel]")) {
      closeSkip();
    }
  });

  // The skip reason is submitted with Enter: send it like the label keys (htmx.ajax), never as a native form
  // post, which would replace the page if htmx had not processed the freshly swapped form yet.
  panel.addEventListener(
    "submit",
    function (event) {
      var form = event.target;
      if (form.id === "ws-label-form") {
        event.preventDefault(); // labels go through submitLabel only (implicit submission has no label)
        return;
      }
      if (form.id !== "ws-skip-form") return;
      event.preventDefault();
      event.stopPropagation();
      if (busy) return;
      busy = true;
      post(form);
    },
    true
  );

  panel.addEventListener("focusin", function (event) {
    var button = event.target.closest && event.target.closest(".ws-label");
    if (button) setFocus(labels().indexOf(button), false);
  });

  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target === panel) onPanelShown();
  });
  document.body.addEventListener("htmx:responseError", function () {
    busy = false;
  });
  document.body.addEventListener("htmx:sendError", function () {
    busy = false;
  });

  onPanelShown();
})();
