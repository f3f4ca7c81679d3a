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

  // Flagged images stay blurred until the viewer clicks once to reveal them.
  document.addEventListener("click", function (event) {
    var figure = event.target.closest && event.target.closest(".nsfw:not(.revealed)");
    if (figure) {
      event.preventDefault();
      figure.classList.add("revealed");
    }
  });
})();
