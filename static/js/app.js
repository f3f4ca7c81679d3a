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
    // htmx.swap() (the form filled from an image's settings) names no target.
    if (!event.detail.target || event.detail.target.id !== "generation-list") return;
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

// --- Studio form: prompt History, starting images dropped or pasted, parameters back in --
(function () {
  "use strict";

  function form() { return document.getElementById("generation-form"); }
  function promptField() { return document.querySelector("#generation-form textarea[name=prompt]"); }

  // Parts that need this file stay hidden without it.
  function showEnhancements() {
    var f = form();
    if (!f) return;
    f.querySelectorAll("#prompt-history-search, .prompt-history-keys, #drop-zone").forEach(function (el) { el.hidden = false; });
    restoreStartingImage();
  }
  document.addEventListener("DOMContentLoaded", showEnhancements);
  document.addEventListener("htmx:afterSettle", showEnhancements);

  // History: the last prompts as a <details> list of links (they work without
  // JavaScript); here a search narrows it, Alt+H or ↑ in an empty prompt opens it, and
  // picking one fills the prompt in place.
  function history() { return document.getElementById("prompt-history"); }

  function filterHistory() {
    var panel = history();
    if (!panel) return;
    var query = panel.querySelector("#prompt-history-search").value.trim().toLowerCase();
    var shown = 0;
    panel.querySelectorAll("#prompt-history-list li").forEach(function (item) {
      var text = item.querySelector("a").getAttribute("data-prompt").toLowerCase();
      item.hidden = query !== "" && text.indexOf(query) < 0;
      if (!item.hidden) shown += 1;
    });
    panel.querySelector(".prompt-history-none").hidden = shown > 0;
  }

  function openHistory() {
    var panel = history();
    if (!panel) return false;
    panel.open = true;
    var search = panel.querySelector("#prompt-history-search");
    search.value = "";
    filterHistory();
    search.focus();
    return true;
  }

  function closeHistory() {
    var panel = history();
    if (panel) panel.open = false;
    var prompt = promptField();
    if (prompt) prompt.focus();
  }

  function visibleHistoryLinks() {
    var panel = history();
    return panel ? Array.prototype.slice.call(panel.querySelectorAll("#prompt-history-list li:not([hidden]) a")) : [];
  }

  function pickHistory(link) {
    var prompt = promptField();
    if (!prompt) return;
    prompt.value = link.getAttribute("data-prompt");
    prompt.dispatchEvent(new Event("input", { bubbles: true }));  // the character count follows
    closeHistory();
    prompt.setSelectionRange(prompt.value.length, prompt.value.length);
  }

  document.addEventListener("keydown", function (event) {
    if (!form()) return;
    var inForm = event.target.closest && event.target.closest("#generation-form");
    // Alt+H from anywhere on the studio page (event.code: on a Mac, Option+H types "˙").
    if (event.altKey && !event.ctrlKey && !event.metaKey && event.code === "KeyH") {
      if (openHistory()) event.preventDefault();
      return;
    }
    if (!inForm) return;
    if (event.key === "ArrowUp" && event.target.name === "prompt" && event.target.value === "" && !event.shiftKey) {
      if (openHistory()) event.preventDefault();
      return;
    }
    var inHistory = event.target.closest("#prompt-history");
    if (!inHistory) return;
    var links = visibleHistoryLinks();
    var index = links.indexOf(event.target);
    if (event.key === "Escape") {
      event.preventDefault();
      closeHistory();
    } else if (event.key === "ArrowDown" && links.length) {
      event.preventDefault();
      links[Math.min(index + 1, links.length - 1)].focus();
    } else if (event.key === "ArrowUp" && index >= 0) {
      event.preventDefault();
      if (index === 0) inHistory.querySelector("#prompt-history-search").focus();
      else links[index - 1].focus();
    } else if (event.key === "Enter" && event.target.id === "prompt-history-search") {
      event.preventDefault();  // Enter picks the first match, it does not submit the form
      if (links.length) pickHistory(links[0]);
    }
  });
  document.addEventListener("input", function (event) {
    if (event.target.id === "prompt-history-search") filterHistory();
  });
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("#prompt-history-list a[data-prompt]");
    if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    pickHistory(link);
  });
  document.addEventListener("toggle", function (event) {
    if (event.target.id === "prompt-history" && event.target.open) {
      filterHistory();
      event.target.querySelector("#prompt-history-search").focus();
    }
  }, true);

  // Starting images the way people hand them over: dropped on the form, pasted
  // (Ctrl/⌘+V) or chosen. The file goes into the form's upload field (through a
  // DataTransfer); a model without one is first switched to one that takes an image.
  // A file carrying generation settings (a studio download, A1111) is read on the
  // server, and the form asks what to do with it.
  var startingFile = null;  // the chosen file, set again after the form is swapped
  var offered = null;       // {file, fields} while the question is shown

  function imageModels(f) {
    return (f.getAttribute("data-image-models") || "").trim().split(/\s+/).filter(Boolean);
  }

  function csrfToken(f) {
    var input = f.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function showDropError(text) {
    var out = document.getElementById("drop-error");
    if (!out) return;
    out.textContent = text || "";
    out.hidden = !text;
  }

  function showPreview(file) {
    var figure = document.getElementById("drop-preview");
    if (!figure) return;
    if (!file) { figure.hidden = true; return; }
    var img = figure.querySelector("img");
    var reader = new FileReader();
    reader.onload = function () {
      img.onload = function () {
        // The real size, so the box keeps the image's aspect (object-fit: contain).
        img.width = img.naturalWidth;
        img.height = img.naturalHeight;
        figure.querySelector("figcaption").textContent = file.name + " · " + img.naturalWidth + "×" + img.naturalHeight + " · the starting image";
      };
      img.src = reader.result;  // a data: URL: the CSP admits data: images, not blob:
      figure.hidden = false;
    };
    reader.readAsDataURL(file);
  }

  function switchModel(f, model) {
    var select = f.querySelector("select[name=model]");
    if (!select) return;
    select.value = model;
    select.dispatchEvent(new Event("change", { bubbles: true }));  // htmx swaps the form
  }

  function useAsStartingImage(file) {
    var f = form();
    if (!f) return;
    startingFile = file;
    var input = f.querySelector("input[type=file][name=image_file]");
    if (!input) {
      var models = imageModels(f);
      if (!models.length) {
        startingFile = null;
        showDropError("No model enabled in this studio starts from an image.");
        return;
      }
      switchModel(f, models[0]);  // restoreStartingImage() runs after the swap
      return;
    }
    var transfer = new DataTransfer();
    transfer.items.add(file);
    input.files = transfer.files;
    // One starting image: the file replaces a studio image or a URL given before.
    var source = f.querySelector("input[name=source_image]");
    if (source) source.value = "";
    var url = f.querySelector("input[name=image_url]");
    if (url) url.value = "";
    var old = document.getElementById("source-preview");
    if (old) old.hidden = true;
    showPreview(file);
  }

  function restoreStartingImage() {
    var f = form();
    if (!f || !startingFile) return;
    var input = f.querySelector("input[type=file][name=image_file]");
    if (!input) { startingFile = null; return; }  // the new model takes no image
    if (!input.files.length) useAsStartingImage(startingFile);
  }

  function fillParameters(fields, file) {
    var f = form();
    if (!f) return;
    var values = Object.assign({}, fields);
    var models = imageModels(f);
    if (file && models.indexOf(values.model) < 0 && models.length) values.model = models[0];
    startingFile = file;
    var body = new FormData();
    Object.keys(values).forEach(function (name) { body.append(name, values[name]); });
    fetch(f.getAttribute("data-form-url"), {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(f), "HX-Request": "true" }
    })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        window.htmx.swap(form(), html, { swapStyle: "outerHTML" });
        var prompt = promptField();
        if (prompt) prompt.focus();
      })
      .catch(function () { showDropError("The settings could not be filled in; try again."); });
  }

  function ask(file, answer) {
    var box = document.getElementById("drop-choice");
    if (!box) return;
    offered = { file: file, fields: answer.fields };
    box.querySelector("#drop-choice-text").textContent = "“" + file.name + "” carries generation settings (" + answer.summary + "). Use it how?";
    box.hidden = false;
    box.querySelector("[data-drop=both]").focus();
  }

  function handleFile(file) {
    var f = form();
    if (!f || !file) return;
    showDropError("");
    document.getElementById("drop-choice").hidden = true;
    if (!/^image\/(png|jpeg|webp)$/.test(file.type)) {
      showDropError("“" + file.name + "” is not a PNG, JPEG or WebP image.");
      return;
    }
    var body = new FormData();
    body.append("image", file);
    var model = f.querySelector("select[name=model]");
    if (model) body.append("model", model.value);
    fetch(f.getAttribute("data-parameters-url"), {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(f) }
    })
      .then(function (response) {
        return response.json().then(function (answer) { return { ok: response.ok, answer: answer }; });
      })
      .then(function (result) {
        if (!result.ok) { showDropError(result.answer.error); return; }
        if (result.answer.found) ask(file, result.answer);
        else useAsStartingImage(file);
      })
      .catch(function () { useAsStartingImage(file); });  // unread settings must not lose the image
  }

  function imageFile(list) {
    for (var i = 0; list && i < list.length; i += 1) {
      if (list[i].type && list[i].type.indexOf("image/") === 0) return list[i];
    }
    return list && list.length ? list[0] : null;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("#drop-choice [data-drop]");
    if (!button || !offered) return;
    var choice = button.getAttribute("data-drop");
    var chosen = offered;
    offered = null;
    document.getElementById("drop-choice").hidden = true;
    if (choice === "image") useAsStartingImage(chosen.file);
    else fillParameters(chosen.fields, choice === "both" ? chosen.file : null);
  });

  document.addEventListener("change", function (event) {
    if (event.target.id === "image-pick") {
      handleFile(event.target.files[0]);
      event.target.value = "";  // choosing the same file again still reports a change
    } else if (event.target.name === "image_file" && event.target.closest("#generation-form")) {
      // Picked with the upload field itself: the same as a drop (preview, settings).
      var file = event.target.files[0] || null;
      startingFile = file;
      if (file) handleFile(file);
      else showPreview(null);
    }
  });

  function dropTarget(event) {
    return event.target.closest && event.target.closest("#generation-form");
  }
  ["dragenter", "dragover"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      var f = dropTarget(event);
      if (!f || !event.dataTransfer || Array.prototype.indexOf.call(event.dataTransfer.types, "Files") < 0) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      f.classList.add("dropping");
    });
  });
  document.addEventListener("dragleave", function (event) {
    var f = dropTarget(event);
    if (f && !f.contains(event.relatedTarget)) f.classList.remove("dropping");
  });
  document.addEventListener("drop", function (event) {
    var f = dropTarget(event);
    if (!f || !event.dataTransfer) return;
    f.classList.remove("dropping");
    var file = imageFile(event.dataTransfer.files);
    if (!file) return;
    event.preventDefault();  // not the browser opening the image in place of the studio
    handleFile(file);
  });
  // An image pasted anywhere on the studio page; pasted text stays ordinary text.
  document.addEventListener("paste", function (event) {
    if (!form() || !event.clipboardData) return;
    var file = imageFile(event.clipboardData.files);
    if (!file) return;
    event.preventDefault();
    handleFile(file);
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
