// The page's one connection to the org's stream (GET /live), shared by its live scripts (the
// bell, the live regions, the dashboard, the budgets, the approvals queue). A browser holds at
// most six HTTP/1.1 connections to a host: a stream per script would spend two a tab.
//
// The scripts subscribe while the page loads; the stream opens once the document is parsed
// (every module script of the page has run by then), so no subscriber misses an event, the
// first of a topic included. A module is evaluated once a page, however many scripts import it.
//
// Two kinds of events: passing ones (run_started, budget_charged...) are each news; a topic's
// (controls, notifications...) carry its version, the first being the state the page was drawn
// from, so only a version past the one seen before is a change (also after a reconnection,
// which resumes by Last-Event-ID).

const passing = new Map(); // kind -> handlers
const topics = new Map(); // kind -> handlers
const opened = [];
const seen = new Map(); // topic -> the version last seen
const heard = new Set(); // kinds the stream has a listener for
let stream = null;
let open = false;

/** Calls `handler` on each event of the passing `kinds`. */
export function onEvents(kinds, handler) {
  for (const kind of kinds) subscribe(passing, kind, handler);
}

/** Calls `handler` when one of `topics` moves past the version the page was drawn from. */
export function onChanges(kinds, handler) {
  for (const kind of kinds) subscribe(topics, kind, handler);
}

/** Calls `handler` once the stream is open: events sent before are not heard. */
export function onOpen(handler) {
  if (open) handler();
  else opened.push(handler);
  connectSoon();
}

function subscribe(registry, kind, handler) {
  if (!registry.has(kind)) registry.set(kind, []);
  registry.get(kind).push(handler);
  if (stream) listen(kind);
  connectSoon();
}

function connectSoon() {
  if (stream || !window.EventSource) return;
  if (parsed()) connect();
  else document.addEventListener("DOMContentLoaded", connect, { once: true });
}

function parsed() {
  // Not document.readyState: it is already "interactive" while the module scripts run.
  const [navigation] = performance.getEntriesByType("navigation");
  return document.readyState === "complete" || (navigation !== undefined && navigation.domContentLoadedEventStart > 0);
}

function connect() {
  if (stream) return;
  stream = new EventSource("/live");
  for (const kind of [...passing.keys(), ...topics.keys()]) listen(kind);
  stream.addEventListener("open", () => {
    open = true;
    for (const handler of opened.splice(0)) handler();
  });
}

function listen(kind) {
  if (heard.has(kind)) return;
  heard.add(kind);
  stream.addEventListener(kind, (event) => {
    for (const handler of passing.get(kind) || []) handler(event);
    if (!topics.has(kind)) return;
    const first = !seen.has(kind);
    const changed = seen.get(kind) !== event.data;
    seen.set(kind, event.data);
    if (!first && changed) for (const handler of topics.get(kind)) handler(event);
  });
}
