// Progressive enhancements only: every page works without this file.
(function () {
  "use strict";

  // Ctrl/Cmd+Enter submits the generation form from anywhere in it.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    var form = event.target.closest && event.target.closest("#generation-form");
    if (form) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  // The custom width/height fields matter only when Size is "Custom".
  function syncCustomSize(root) {
    var form = (root || document).querySelector("#generation-form");
    if (!form) return;
    var size = form.querySelector("select[name=image_size]");
    var custom = form.querySelector(".custom-size");
    if (!size || !custom) return;
    custom.hidden = size.value !== "custom" && !custom.querySelector(".has-error");
  }
  document.addEventListener("change", function (event) {
    if (event.target.name === "image_size") syncCustomSize();
  });
  document.addEventListener("DOMContentLoaded", function () { syncCustomSize(); });
  document.addEventListener("htmx:afterSettle", function () { syncCustomSize(); });

  // The estimate follows the Images field: price × images, as the provider bills it.
  function syncCost() {
    var price = document.getElementById("model-price");
    var out = document.getElementById("estimated-cost");
    if (!price || !out) return;
    var field = document.querySelector("#generation-form [name=num_images], #generation-form [name=n]");
    var images = field ? parseInt(field.value, 10) : 1;
    if (!(images >= 1)) images = 1;
    out.textContent = (parseFloat(price.getAttribute("data-price")) * images).toFixed(4);
  }

  // "123 / 4000" under the prompt, red past the model's limit.
  function syncCount() {
    var out = document.getElementById("prompt-count");
    var prompt = document.querySelector("#generation-form textarea[name=prompt]");
    if (!out || !prompt) return;
    var max = parseInt(out.getAttribute("data-max"), 10);
    out.hidden = false;
    out.textContent = prompt.value.length + " / " + max;
    out.classList.toggle("over", prompt.value.length > max);
  }

  // A prompt filled in by "Reuse" gets the cursor at its end, where typing continues it.
  function cursorToEnd() {
    var prompt = document.querySelector("#generation-form textarea[name=prompt]");
    if (prompt && document.activeElement === prompt && prompt.value) {
      prompt.setSelectionRange(prompt.value.length, prompt.value.length);
    }
  }

  document.addEventListener("input", function (event) {
    if (!event.target.closest || !event.target.closest("#generation-form")) return;
    if (event.target.name === "prompt") syncCount();
    if (event.target.name === "num_images" || event.target.name === "n") syncCost();
  });
  document.addEventListener("DOMContentLoaded", function () { syncCost(); syncCount(); cursorToEnd(); });
  document.addEventListener("htmx:afterSettle", function () { syncCost(); syncCount(); });

  // After a successful submit the old field errors go, and the new card comes into view.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target.id !== "generation-list") return;
    var form = document.getElementById("generation-form");
    if (form) {
      form.querySelectorAll(".field-error, .errors").forEach(function (el) { el.remove(); });
      form.querySelectorAll(".has-error").forEach(function (el) { el.classList.remove("has-error"); });
    }
    var card = event.detail.target.firstElementChild;
    if (card && card.scrollIntoView) card.scrollIntoView({ block: "nearest", behavior: "smooth" });
  });

  // Flagged images stay blurred until the viewer clicks once to reveal them.
  document.addEventListener("click", function (event) {
    var figure = event.target.closest && event.target.closest(".nsfw:not(.revealed)");
    if (figure) {
      event.preventDefault();
      figure.classList.add("revealed");
    }
  });
})();

// --- Gallery ---------------------------------------------------------------------------
(function () {
  "use strict";

  // Buttons that need JavaScript (copy, select all) stay hidden without it.
  function showEnhancements(root) {
    (root || document).querySelectorAll(".copy-button[hidden], .select-all[hidden]").forEach(function (el) {
      el.hidden = false;
    });
  }
  document.addEventListener("DOMContentLoaded", function () { showEnhancements(); updateCount(); });
  document.addEventListener("htmx:afterSettle", function () { showEnhancements(); updateCount(); });

  // "Copy prompt" copies the readonly prompt field named by data-copy.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    var field = document.querySelector(button.getAttribute("data-copy"));
    if (!field) return;
    var done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () { field.select(); });
    } else {
      field.select();
      document.execCommand("copy");
      done();
    }
  });

  // How many cards are selected, next to the bulk actions.
  function updateCount() {
    var label = document.getElementById("bulk-count");
    if (!label) return;
    var n = document.querySelectorAll("input[form=gallery-bulk][name=image]:checked").length;
    label.textContent = n ? n + " selected:" : "Select images, then:";
  }
  document.addEventListener("change", function (event) {
    if (event.target.getAttribute && event.target.getAttribute("form") === "gallery-bulk") updateCount();
  });
  document.addEventListener("click", function (event) {
    if (!event.target.closest || !event.target.closest(".select-all")) return;
    document.querySelectorAll("input[form=gallery-bulk][name=image]").forEach(function (box) { box.checked = true; });
    updateCount();
  });

  // Destructive buttons ask first (data-confirm); without JavaScript they submit directly.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) event.preventDefault();
  });
})();

// Moderation queue shortcuts: j/k move between items, x ticks one, a/h/d press the
// focused item's approve/hide/delete button (hide and delete need the reason first).
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    var list = document.getElementById("moderation-list");
    if (!list || event.ctrlKey || event.metaKey || event.altKey) return;
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select") return;
    var items = Array.prototype.slice.call(list.querySelectorAll(".moderation-item"));
    if (!items.length) return;
    var current = event.target.closest && event.target.closest(".moderation-item");
    var index = current ? items.indexOf(current) : -1;
    if (event.key === "j" || event.key === "k") {
      event.preventDefault();
      var next = event.key === "j" ? Math.min(index + 1, items.length - 1) : Math.max(index - 1, 0);
      items[next].focus();
      return;
    }
    if (!current) return;
    if (event.key === "x") {
      event.preventDefault();
      var box = current.querySelector("input[type=checkbox]");
      box.checked = !box.checked;
      return;
    }
    var button = current.querySelector("button[data-shortcut='" + event.key + "']");
    if (!button) return;
    event.preventDefault();
    var reason = document.getElementById("moderation-reason");
    if (event.key !== "a" && reason && !reason.value.trim()) {
      reason.focus();
      reason.setAttribute("aria-invalid", "true");
      return;
    }
    button.click();
  });
})();
