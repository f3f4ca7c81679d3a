// The browser's one live event stream, shared by all of its tabs (a SharedWorker).
// A browser opens at most 6 HTTP/1.1 connections to a host: a stream per tab would
// leave the 7th tab waiting for a connection that never comes. Each tab joins through
// a port and is sent the stream's state and events; static/js/live.js acts on them.
"use strict";

// The last events, for a tab that joins after they arrived but rendered before.
const KEEP = 200;
// After the server refused the stream (full, or signed out), try again this much later.
const RETRY_MS = 30000;
const KINDS = ["generation", "moderators", "notifications"];

const ports = new Set();
const recent = [];
let source = null;
let streamUrl = null;
let state = "connecting";
let retryTimer = null;
// Every event after this id reached the tabs or is in `recent`.
let coveredFrom = null;
let lastId = null;

function order(id) {
  const [first, second] = String(id).split("-");
  return [Number(first), Number(second || 0)];
}

function isAfter(a, b) {
  const x = order(a);
  const y = order(b);
  return x[0] > y[0] || (x[0] === y[0] && x[1] > y[1]);
}

function broadcast(message) {
  for (const port of ports) port.postMessage(message);
}

function setState(next) {
  state = next;
  broadcast({ type: "state", state });
}

function open(since) {
  const url = new URL(streamUrl, self.location.origin);
  url.searchParams.set("since", since);
  source = new EventSource(url);
  source.onopen = () => setState("open");
  source.onerror = () => {
    if (source && source.readyState === EventSource.CLOSED) {
      // Not a dropped connection (EventSource retries those itself) but a refusal.
      source = null;
      setState("down");
      retryTimer = setTimeout(() => {
        retryTimer = null;
        if (ports.size) open(lastId || since);
      }, RETRY_MS);
    } else {
      setState("connecting");
    }
  };
  for (const kind of KINDS) {
    source.addEventListener(kind, (message) => {
      lastId = message.lastEventId;
      const event = { id: message.lastEventId, kind, data: JSON.parse(message.data) };
      recent.push(event);
      if (recent.length > KEEP) coveredFrom = recent.shift().id;
      broadcast({ type: "event", event });
    });
  }
}

function join(port, url, since) {
  ports.add(port);
  if (!source && !retryTimer) {
    streamUrl = url;
    coveredFrom = since;
    open(since);
  } else if (since && coveredFrom && isAfter(coveredFrom, since)) {
    // The tab rendered before what this stream can account for: it reloads its cards.
    port.postMessage({ type: "resync" });
  }
  port.postMessage({ type: "state", state });
  for (const event of recent) {
    if (!since || isAfter(event.id, since)) port.postMessage({ type: "event", event });
  }
}

function leave(port) {
  ports.delete(port);
  if (ports.size === 0 && source) {
    source.close();
    source = null;
    state = "connecting";
  }
}

self.onconnect = (connection) => {
  const port = connection.ports[0];
  port.onmessage = (message) => {
    const { type, url, since } = message.data || {};
    if (type === "join") join(port, url, since);
    else if (type === "leave") leave(port);
  };
  port.start();
};
