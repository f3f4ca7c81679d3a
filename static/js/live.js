// Live updates: the page follows the server's event stream instead of polling.
//
// The stream is shared by every tab of the browser through a SharedWorker
// (static/js/live-worker.js). Where there is no SharedWorker, only a visible tab holds
// a stream of its own and hidden tabs poll. An event names what changed; the page
// re-renders that card through its `?part=card` partial, once per change. The cards'
// own 2 s polling (templates/generator/studio.html) stays the fallback: it is held
// back while the stream is up and runs again when the stream is refused or lost, and
// without JavaScript or EventSource nothing here runs at all.
(function () {
  "use strict";

  const body = document.body;
  const streamUrl = body.dataset.liveUrl;
  if (!streamUrl || !("EventSource" in window) || !window.htmx) return;

  const since = body.dataset.liveSince || "";
  const cardUrl = body.dataset.liveCard || "";
  const ZERO_UUID = "00000000-0000-0000-0000-000000000000";
  // A stream that has not opened by then is taken for lost: the cards poll meanwhile.
  const CONNECT_GRACE_MS = 10000;
  const KINDS = ["generation", "moderators", "notifications"];

  let state = "connecting";
  let lastSeen = "";
  let graceTimer = null;

  function setState(next) {
    state = next;
    document.documentElement.dataset.live = next;
    clearTimeout(graceTimer);
    if (next === "connecting") {
      graceTimer = setTimeout(() => {
        if (state === "connecting") setState("down");
      }, CONNECT_GRACE_MS);
    }
  }

  // --- Cards -----------------------------------------------------------------

  function isCard(element) {
    return element instanceof Element && element.matches("#generation-list > li.card");
  }

  // A card's own poll is cancelled unless the stream is down; a refresh this script
  // asked for is marked and goes through.
  document.addEventListener("htmx:beforeRequest", (event) => {
    const element = event.detail.elt;
    if (!isCard(element)) return;
    if (element.dataset.liveRefresh) {
      delete element.dataset.liveRefresh;
      return;
    }
    if (state !== "down") event.preventDefault();
  });

  // The tab that submitted the form swaps its new card in, and the stream may have
  // added the same card first: the newer one stays.
  document.addEventListener("htmx:load", (event) => {
    const element = event.detail.elt;
    if (!isCard(element)) return;
    for (const other of document.querySelectorAll(`[id="${element.id}"]`)) {
      if (other !== element) other.remove();
    }
  });

  // One request per change: a change arriving while its card is loading waits for it.
  const loading = new Map();

  function generationChanged(uuid) {
    const list = document.getElementById("generation-list");
    const card = document.getElementById(`generation-${uuid}`);
    if (!list || !cardUrl || !/^[0-9a-f-]{36}$/.test(uuid)) return;
    if (loading.has(uuid)) {
      loading.set(uuid, true);
      return;
    }
    loading.set(uuid, false);
    const path = cardUrl.replace(ZERO_UUID, uuid);
    let request;
    if (card) {
      card.dataset.liveRefresh = "1";
      request = htmx.ajax("GET", path, { source: card, target: `#generation-${uuid}`, swap: "outerHTML" });
    } else {
      // Started in another tab (or by the API): it joins the top of the list.
      request = htmx.ajax("GET", path, { source: list, target: list, swap: "afterbegin" });
    }
    Promise.resolve(request).finally(() => {
      const again = loading.get(uuid);
      loading.delete(uuid);
      if (again) generationChanged(uuid);
    });
  }

  function resync() {
    for (const card of document.querySelectorAll("#generation-list > li.card[hx-trigger]")) {
      generationChanged(card.id.replace("generation-", ""));
    }
  }

  // --- Badges ----------------------------------------------------------------

  function setBadge(host, count, label) {
    if (!host) return;
    let badge = host.querySelector(":scope > .badge-count");
    if (!count) {
      if (badge) badge.remove();
      return;
    }
    if (!badge) {
      badge = document.createElement("span");
      badge.className = "badge badge-count";
      host.append(" ", badge);
    }
    badge.textContent = String(count);
    if (label) badge.setAttribute("aria-label", label);
  }

  function moderationChanged(waiting) {
    const menu = document.getElementById("admin-menu");
    if (!menu) return;
    setBadge(menu.querySelector(":scope > summary"), waiting, `${waiting} waiting for review`);
    setBadge(menu.querySelector("a[data-live-badge=moderation]"), waiting, null);
  }

  function onEvent(event) {
    lastSeen = event.id;
    if (event.kind === "generation") generationChanged(String(event.data.uuid));
    else if (event.kind === "moderators") moderationChanged(Number(event.data.waiting) || 0);
    else if (event.kind === "notifications") {
      const unread = Number(event.data.unread) || 0;
      setBadge(document.getElementById("notifications-link"), unread, `${unread} unread`);
    }
  }

  // --- The stream ------------------------------------------------------------

  function onMessage(message) {
    if (message.type === "state") setState(message.state);
    else if (message.type === "event") onEvent(message.event);
    else if (message.type === "resync") resync();
  }

  function shared() {
    let worker;
    try {
      worker = new SharedWorker(body.dataset.liveWorker, { name: "studio-live" });
    } catch (error) {
      return false;
    }
    worker.onerror = () => setState("down");
    const port = worker.port;
    port.onmessage = (message) => onMessage(message.data || {});
    port.start();
    const join = (from) => port.postMessage({ type: "join", url: streamUrl, since: from });
    join(since);
    window.addEventListener("pagehide", () => port.postMessage({ type: "leave" }));
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) join(lastSeen || since);
    });
    return true;
  }

  // Without SharedWorker: a stream of this tab's own while it is visible.
  function ownStream() {
    let source = null;
    const open = () => {
      const url = new URL(streamUrl, window.location.origin);
      url.searchParams.set("since", lastSeen || since);
      source = new EventSource(url);
      source.onopen = () => setState("open");
      source.onerror = () => setState(source.readyState === EventSource.CLOSED ? "down" : "connecting");
      for (const kind of KINDS) {
        source.addEventListener(kind, (message) =>
          onEvent({ id: message.lastEventId, kind, data: JSON.parse(message.data) }),
        );
      }
    };
    const follow = () => {
      if (document.visibilityState === "visible" && !source) {
        setState("connecting");
        open();
      } else if (document.visibilityState !== "visible" && source) {
        source.close();
        source = null;
        setState("down");
      }
    };
    document.addEventListener("visibilitychange", follow);
    if (document.visibilityState === "visible") follow();
    else setState("down");
  }

  setState("connecting");
  if (!("SharedWorker" in window) || !shared()) ownStream();
})();
