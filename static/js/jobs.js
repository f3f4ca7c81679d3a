// The clocks on generation cards: elapsed time counts up, the ETA counts down, once a
// second, without asking the server. Each <time data-clock> carries the seconds as the
// server counted them when it rendered the card, so the browser's own clock (which may
// be off) never matters; a re-rendered card brings fresh figures.
(function () {
  "use strict";

  var seen = new WeakMap();

  function clockText(seconds) {
    var whole = Math.max(0, Math.floor(seconds));
    if (whole < 60) return whole + " s";
    var rest = whole % 60;
    return Math.floor(whole / 60) + " min " + (rest < 10 ? "0" : "") + rest + " s";
  }

  function tick() {
    var now = performance.now();
    document.querySelectorAll("time[data-clock]").forEach(function (el) {
      if (!seen.has(el)) seen.set(el, now);
      var base = parseFloat(el.getAttribute("data-seconds")) || 0;
      var passed = (now - seen.get(el)) / 1000;
      if (el.getAttribute("data-clock") === "up") {
        el.textContent = clockText(base + passed);
      } else {
        var left = base - passed;
        el.textContent = left >= 1 ? "about " + clockText(left) : "any moment now";
      }
    });
  }

  setInterval(tick, 1000);
  document.addEventListener("DOMContentLoaded", tick);
  document.addEventListener("htmx:afterSettle", tick);
})();
