// Parts of a page kept live from the org's stream (GET /live, through live.js): the runs explorer,
// the agents list and the emergency controls. Each live part is an element with a unique
// data-live-region name; data-live-events names the stream's passing events that change it
// (run_started, run_updated) and data-live-topics its topics (controls). On such an event the page
// is fetched again (once for a burst) and each part whose markup changed is swapped in, unless
// someone is writing in it (a focused field, a field changed, a box ticked): that part is left
// alone and marked data-live-stale, and the next event tries again.

import { onChanges, onEvents, onOpen } from "./live.js";

const BURST_MS = 250;

function regions(root) {
  return [...root.querySelectorAll("[data-live-region]")];
}

function words(name) {
  return new Set(regions(document).flatMap((part) => (part.dataset[name] || "").split(/\s+/)).filter(Boolean));
}

function edited(part) {
  const active = document.activeElement;
  if (active && part.contains(active) && active.matches("input, textarea, select")) return true;
  return [...part.querySelectorAll("input, textarea, select")].some((field) => {
    if (field.type === "checkbox" || field.type === "radio") return field.checked !== field.defaultChecked;
    if (field.tagName === "SELECT") return [...field.options].some((option) => option.selected !== option.defaultSelected);
    return field.type !== "hidden" && field.value !== field.defaultValue;
  });
}

async function refresh() {
  const answer = await fetch(window.location.href, { credentials: "same-origin" });
  if (!answer.ok) return;
  const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
  for (const part of regions(document)) {
    const next = fresh.querySelector(`[data-live-region="${part.dataset.liveRegion}"]`);
    if (!next || next.innerHTML === part.innerHTML) continue;
    if (edited(part)) {
      part.dataset.liveStale = "";
      continue;
    }
    part.replaceWith(document.adoptNode(next));
  }
  document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
}

function listen() {
  if (!regions(document).length) return;
  let soon = null;
  const schedule = () => {
    if (soon !== null) return;
    soon = window.setTimeout(() => {
      soon = null;
      refresh();
    }, BURST_MS);
  };
  onEvents(words("liveEvents"), schedule);
  onChanges(words("liveTopics"), schedule);
  onOpen(() => {
    document.body.dataset.live = "listening";
  });
}

listen();
