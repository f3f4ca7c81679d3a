// The theme follows the system (prefers-color-scheme) until someone picks one with the
// menu's switch; the choice is kept in this browser. Loaded before the first paint so a
// dark page never flashes white.
(function () {
  "use strict";
  var root = document.documentElement;
  var stored = null;
  try { stored = window.localStorage.getItem("theme"); } catch (e) { /* storage disabled */ }
  if (stored === "light" || stored === "dark") root.setAttribute("data-theme", stored);

  function current() {
    var chosen = root.getAttribute("data-theme");
    if (chosen) return chosen;
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }
  function label(button) {
    button.textContent = current() === "dark" ? "Light theme" : "Dark theme";
    button.setAttribute("aria-pressed", current() === "dark" ? "true" : "false");
  }
  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    button.hidden = false;
    label(button);
    button.addEventListener("click", function () {
      var next = current() === "dark" ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try { window.localStorage.setItem("theme", next); } catch (e) { /* not kept */ }
      label(button);
    });
  });
})();
