// Shared keyboard layer of the labelling pages (workspace, review, adjudication, re-check): label hotkeys, the
// `?` help dialog and the filter-as-you-type label picker. Each page script says what a key does there.
window.SceneKeys = (function () {
  "use strict";

  function isTyping(target) {
    if (!target || !target.tagName) return false;
    return target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT";
  }

  function normalise(event) {
    return event.key.length === 1 ? event.key.toLowerCase() : event.key;
  }

  function toggleDialog(dialog) {
    if (!dialog) return;
    if (dialog.open) dialog.close();
    else dialog.showModal();
  }

  // Picker: an <input data-picker-input aria-controls="ID"> over the options (elements with data-key and
  // data-search) inside the element ID. Typing hides what does not match; arrows move; Enter picks.
  function Picker(input, onPick) {
    this.input = input;
    this.onPick = onPick;
    this.active = -1;
    var self = this;
    input.addEventListener("input", function () {
      self.filter();
    });
    input.addEventListener("keydown", function (event) {
      self.onKey(event);
    });
  }

  Picker.prototype.root = function () {
    return document.getElementById(this.input.getAttribute("aria-controls"));
  };

  Picker.prototype.options = function () {
    var root = this.root();
    return root ? Array.prototype.slice.call(root.querySelectorAll("[data-search]")) : [];
  };

  Picker.prototype.visible = function () {
    return this.options().filter(function (node) {
      return !node.hidden;
    });
  };

  Picker.prototype.filter = function () {
    var words = this.input.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    this.options().forEach(function (node) {
      var haystack = node.getAttribute("data-search");
      node.hidden = !words.every(function (word) {
        return haystack.indexOf(word) >= 0;
      });
    });
    this.setActive(0);
  };

  Picker.prototype.setActive = function (index) {
    var shown = this.visible();
    this.options().forEach(function (node) {
      node.classList.remove("pick-active");
      node.removeAttribute("aria-selected");
    });
    if (!shown.length) {
      this.active = -1;
      this.input.removeAttribute("aria-activedescendant");
      return;
    }
    this.active = (index + shown.length) % shown.length;
    var node = shown[this.active];
    node.classList.add("pick-active");
    node.setAttribute("aria-selected", "true");
    if (node.id) this.input.setAttribute("aria-activedescendant", node.id);
    if (node.scrollIntoView) node.scrollIntoView({ block: "nearest" });
  };

  Picker.prototype.onKey = function (event) {
    if (event.key === "ArrowDown") {
      event.preventDefault();
      this.setActive(this.active + 1);
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      this.setActive(this.active - 1);
    } else if (event.key === "Enter") {
      event.preventDefault();
      var node = this.visible()[this.active];
      if (node) this.onPick(node.getAttribute("data-key"));
    } else if (event.key === "Escape") {
      event.preventDefault();
      this.reset();
      this.input.blur();
    }
  };

  Picker.prototype.reset = function () {
    this.input.value = "";
    this.filter();
    this.options().forEach(function (node) {
      node.classList.remove("pick-active");
    });
  };

  Picker.prototype.open = function () {
    this.input.focus();
    this.input.select();
    this.filter();
  };

  // bind(options): one keydown handler for a page.
  //   help: the <dialog> toggled by `?`;  hotkeys(): [{hotkey, key}] of the labels that apply now;
  //   onLabel(key): a label hotkey was pressed;  keys: {key: handler} for page keys (Enter, s, u, e, ...);
  //   picker(): the Picker `/` opens (or null).
  function bind(options) {
    var help = options.help || null;
    document.querySelectorAll("[data-keys-help]").forEach(function (node) {
      node.addEventListener("click", function () {
        toggleDialog(help);
      });
    });
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (isTyping(event.target)) return; // inputs handle their own keys (picker, comments, skip reason)
      if (help && help.open) {
        if (event.key === "?" || event.key === "Escape") {
          event.preventDefault();
          help.close();
        }
        return;
      }
      var key = normalise(event);
      if (key === "?") {
        event.preventDefault();
        toggleDialog(help);
        return;
      }
      if (key === "/" && options.picker) {
        var picker = options.picker();
        if (picker) {
          event.preventDefault();
          picker.open();
        }
        return;
      }
      var handler = options.keys && options.keys[key];
      if (handler) {
        if (handler(event) !== false) event.preventDefault();
        return;
      }
      var hit = (options.hotkeys ? options.hotkeys() : []).filter(function (label) {
        return label.hotkey === key;
      })[0];
      if (hit) {
        event.preventDefault();
        options.onLabel(hit.key);
      }
    });
  }

  // Label hotkeys of the option elements under root: [{hotkey, key}].
  function hotkeysIn(root) {
    if (!root) return [];
    return Array.prototype.slice.call(root.querySelectorAll("[data-hotkey]")).map(function (node) {
      return { hotkey: node.getAttribute("data-hotkey"), key: node.getAttribute("data-key") };
    });
  }

  return { bind: bind, Picker: Picker, hotkeysIn: hotkeysIn, isTyping: isTyping, toggleDialog: toggleDialog };
})();
