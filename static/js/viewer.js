// In-app viewer, on every page with a list of images (gallery, studio, a collection):
// a link marked data-viewer opens its image in the page's <dialog id="viewer"> (modal,
// so focus stays inside it), ←/→ step through the links of the same list in their
// order (the gallery's filters and order, the studio's history, a collection's own
// order), Esc or ✕ closes. The address bar shows the image's own page, so it can be
// shared, and Back closes the viewer. Without JavaScript each link goes where its href
// says (the image page, or the generation page on the studio).
(function () {
  "use strict";
  var dialog, body, position, current = null, pushed = false;

  // The image page a link opens: data-viewer names it, or the link's own href does.
  function target(link) {
    return link.getAttribute("data-viewer") || link.getAttribute("href");
  }

  function listOf(link) {
    return (link && link.closest("[data-viewer-list]")) || document;
  }

  function links(root) {
    return Array.prototype.slice.call(root.querySelectorAll("a[data-viewer]"));
  }

  // The gallery's infinite scroll: the "Older" link that loads the next page in place.
  function olderLink(root) {
    return root.querySelector(".pager-older a");
  }

  function show(link, push) {
    current = link;
    var url = target(link);
    var root = listOf(link);
    var list = links(root);
    var index = list.indexOf(link);
    var more = olderLink(root);
    position.textContent = (index + 1) + " of " + list.length + (more ? "+" : "");
    dialog.querySelector("[data-step='-1']").disabled = index <= 0;
    dialog.querySelector("[data-step='1']").disabled = index >= list.length - 1 && !more;
    body.setAttribute("aria-busy", "true");
    fetch(url + (url.indexOf("?") < 0 ? "?" : "&") + "part=viewer", { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        if (current !== link) return;  // a later step already asked for another image
        body.innerHTML = html;
        body.removeAttribute("aria-busy");
        if (window.htmx) window.htmx.process(body);
        document.dispatchEvent(new CustomEvent("viewer:shown"));
      })
      .catch(function () {
        if (current !== link) return;
        body.removeAttribute("aria-busy");
        window.location.href = url;  // the page itself says what went wrong
      });
    if (!dialog.open) dialog.showModal();
    if (push) {
      if (!pushed) { window.history.pushState({ viewer: true }, "", url); pushed = true; }
      else window.history.replaceState({ viewer: true }, "", url);
    }
  }

  function step(delta) {
    if (!current) return;
    var root = listOf(current);
    var list = links(root);
    var index = list.indexOf(current);
    var next = list[index + delta];
    if (next) { show(next, true); next.scrollIntoView({ block: "nearest" }); return; }
    // Past the last loaded tile: load the next page of the list, then step into it.
    var older = olderLink(root);
    if (delta > 0 && older && window.htmx) {
      document.addEventListener("htmx:afterSettle", function once() {
        document.removeEventListener("htmx:afterSettle", once);
        var fresh = links(root)[index + 1];
        if (fresh) show(fresh, true);
      });
      window.htmx.trigger(older, "intersect");
    }
  }

  function close() {
    if (dialog && dialog.open) dialog.close();
  }

  document.addEventListener("DOMContentLoaded", function () {
    dialog = document.getElementById("viewer");
    if (!dialog || typeof dialog.showModal !== "function") return;
    body = dialog.querySelector(".viewer-body");
    position = dialog.querySelector(".viewer-position");

    document.addEventListener("click", function (event) {
      var link = event.target.closest && event.target.closest("a[data-viewer]");
      if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      if (link.closest(".nsfw:not(.revealed)")) return;  // the first click reveals
      event.preventDefault();
      show(link, true);
    });
    dialog.addEventListener("click", function (event) {
      var button = event.target.closest("button");
      if (button && button.hasAttribute("data-step")) step(parseInt(button.getAttribute("data-step"), 10));
      else if (button && button.classList.contains("viewer-close")) close();
      else if (event.target === dialog) close();  // a click on the backdrop
    });
    dialog.addEventListener("keydown", function (event) {
      var tag = (event.target.tagName || "").toLowerCase();
      if (tag === "input" || tag === "textarea" || tag === "select") return;
      if (event.key === "ArrowRight") { event.preventDefault(); step(1); }
      if (event.key === "ArrowLeft") { event.preventDefault(); step(-1); }
    });
    dialog.addEventListener("close", function () {
      var link = current;
      current = null;
      body.innerHTML = "";
      if (pushed) { pushed = false; window.history.back(); }  // back to the list's address
      // The studio may have swapped the card (live updates) while the viewer was open.
      if (link && !link.isConnected && link.id) link = document.getElementById(link.id);
      if (link && link.isConnected) link.focus();
    });
    window.addEventListener("popstate", function () {
      if (dialog.open) { pushed = false; dialog.close(); }
    });
  });
})();

// Arrow keys move focus between the tiles of a list (gallery, collection): ←/→ to the
// previous or next one, ↑/↓ to the one above or below in the grid as it is laid out.
// Enter on a tile opens it in the viewer; Tab still goes through every control.
(function () {
  "use strict";
  var STEPS = { ArrowLeft: -1, ArrowRight: 1 };

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.shiftKey) return;
    var link = event.target.closest && event.target.closest(".tile-link[data-viewer]");
    if (!link || link.closest("dialog")) return;
    var root = link.closest("[data-viewer-list]");
    if (!root) return;
    var list = Array.prototype.slice.call(root.querySelectorAll(".tile-link[data-viewer]"));
    var index = list.indexOf(link);
    var next = null;
    if (event.key in STEPS) {
      next = list[index + STEPS[event.key]];
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      // The tile in the next (or previous) row whose left edge is nearest this one's.
      var box = link.getBoundingClientRect();
      var down = event.key === "ArrowDown";
      var best = null, bestDistance = Infinity;
      list.forEach(function (other) {
        var r = other.getBoundingClientRect();
        var row = down ? r.top > box.top + 1 : r.top < box.top - 1;
        if (!row) return;
        var distance = Math.abs(r.top - box.top) * 10000 + Math.abs(r.left - box.left);
        if (distance < bestDistance) { best = other; bestDistance = distance; }
      });
      next = best;
    } else {
      return;
    }
    event.preventDefault();
    if (next) { next.focus(); next.scrollIntoView({ block: "nearest" }); }
  });
})();
