// Review, adjudication and re-check pages: the shared SceneKeys layer turned into these pages' form submits.
(function () {
  "use strict";

  var help = document.getElementById("ws-help");

  function submitWith(button) {
    if (!button || button.disabled) return;
    button.form.requestSubmit(button);
  }

  function buttonFor(root, key) {
    return Array.prototype.slice.call(root.querySelectorAll("button[data-key]")).filter(function (node) {
      return node.getAttribute("data-key") === key;
    })[0];
  }

  // A focused button keeps its own Enter (and Space): the key means "this one".
  function focusedButton() {
    var active = document.activeElement;
    return active && active.tagName === "BUTTON";
  }

  function reviewTask(form) {
    var options = document.getElementById("review-labels");
    var picker = new SceneKeys.Picker(document.getElementById("review-pick"), function (key) {
      submitWith(buttonFor(options, key));
    });
    SceneKeys.bind({
      help: help,
      picker: function () {
        return picker;
      },
      hotkeys: function () {
        return SceneKeys.hotkeysIn(options);
      },
      onLabel: function (key) {
        submitWith(buttonFor(options, key));
      },
      keys: {
        Enter: function () {
          if (focusedButton()) return false;
          submitWith(document.getElementById("review-confirm"));
        },
      },
    });
    leaveFieldsWithEscape(form);
  }

  function adjudication(entries) {
    var current = 0;
    var pickers = {};

    function entry() {
      return entries[current];
    }

    function setCurrent(index, scroll) {
      current = Math.max(0, Math.min(entries.length - 1, index));
      entries.forEach(function (node, i) {
        node.classList.toggle("adj-current", i === current);
        node.setAttribute("aria-current", i === current ? "true" : "false");
      });
      if (scroll && entry().scrollIntoView) entry().scrollIntoView({ block: "nearest" });
    }

    function decide(key) {
      submitWith(buttonFor(entry(), key));
    }

    function pickerOf(node) {
      var input = node.querySelector("[data-picker-input]");
      if (!input) return null;
      if (!pickers[input.id]) pickers[input.id] = new SceneKeys.Picker(input, decide);
      return pickers[input.id];
    }

    entries.forEach(function (node, i) {
      node.addEventListener("focusin", function () {
        if (i !== current) setCurrent(i, false);
      });
      pickerOf(node);
      // Enter in the comment must not decide the item with the first label button (implicit submission).
      var reason = node.querySelector("input[name=reason]");
      if (reason) {
        reason.addEventListener("keydown", function (event) {
          if (event.key === "Enter") event.preventDefault();
        });
      }
    });
    setCurrent(0, false);
    SceneKeys.bind({
      help: help,
      picker: function () {
        return pickerOf(entry());
      },
      hotkeys: function () {
        return SceneKeys.hotkeysIn(entry());
      },
      onLabel: decide,
      keys: {
        ArrowDown: function () {
          setCurrent(current + 1, true);
        },
        ArrowUp: function () {
          setCurrent(current - 1, true);
        },
        Enter: function () {
          if (focusedButton()) return false;
          submitWith(entry().querySelector("button[data-key].primary"));
        },
      },
    });
    entries.forEach(leaveFieldsWithEscape);
  }

  function recheck(form) {
    var rows = Array.prototype.slice.call(form.querySelectorAll(".recheck"));
    var options = document.getElementById("recheck-labels");
    var current = 0;

    function setCurrent(index) {
      if (!rows.length) return;
      current = Math.max(0, Math.min(rows.length - 1, index));
      rows.forEach(function (row, i) {
        row.classList.toggle("recheck-current", i === current);
      });
      rows[current].scrollIntoView({ block: "nearest" });
    }

    // With nothing selected a key moves the current item only.
    function move(key) {
      var boxes = form.querySelectorAll("input[name=item_id]:checked");
      if (!boxes.length && rows.length) rows[current].querySelector("input[name=item_id]").checked = true;
      submitWith(buttonFor(options, key));
    }

    function toggleCurrent() {
      if (!rows.length) return;
      var box = rows[current].querySelector("input[name=item_id]");
      box.checked = !box.checked;
    }

    var picker = new SceneKeys.Picker(document.getElementById("recheck-pick"), move);
    var all = document.getElementById("recheck-all");
    if (all) {
      all.addEventListener("change", function () {
        form.querySelectorAll("input[name=item_id]").forEach(function (box) {
          box.checked = all.checked;
        });
      });
    }
    rows.forEach(function (row, i) {
      row.addEventListener("focusin", function () {
        current = i;
        setCurrent(i);
      });
    });
    setCurrent(0);
    SceneKeys.bind({
      help: help,
      picker: function () {
        return picker;
      },
      hotkeys: function () {
        return SceneKeys.hotkeysIn(options);
      },
      onLabel: move,
      keys: {
        ArrowDown: function () {
          setCurrent(current + 1);
        },
        ArrowUp: function () {
          setCurrent(current - 1);
        },
        " ": function () {
          if (focusedButton()) return false;
          toggleCurrent();
        },
      },
    });
  }

  function leaveFieldsWithEscape(root) {
    root.querySelectorAll("textarea, input[type=text]").forEach(function (field) {
      field.addEventListener("keydown", function (event) {
        if (event.key === "Escape") field.blur();
      });
    });
  }

  var reviewForm = document.getElementById("review-form");
  var entries = Array.prototype.slice.call(document.querySelectorAll(".adjudication-entry"));
  var recheckForm = document.getElementById("recheck-form");
  if (reviewForm) reviewTask(reviewForm);
  else if (entries.length) adjudication(entries);
  else if (recheckForm) recheck(recheckForm);
  else if (help) SceneKeys.bind({ help: help });
})();
