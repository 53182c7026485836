// Parts of a page kept live from the org's stream (GET /live): the runs explorer, the agents
// list and the emergency controls. Each live part is an element with a unique
// data-live-region name; data-live-events names the stream's passing events that change it
// (run_started, run_updated) and data-live-topics its topics (controls). On such an event the
// page is fetched again (once for a burst) and each part whose markup changed is swapped in,
// unless someone is writing in it (a focused field, a field changed, a box ticked): that part
// is left alone and marked data-live-stale, and the next event tries again.

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
  if (!regions(document).length || !window.EventSource) return;
  let soon = null;
  const schedule = () => {
    if (soon !== null) return;
    soon = window.setTimeout(() => {
      soon = null;
      refresh();
    }, BURST_MS);
  };
  const known = new Map();
  const stream = new EventSource("/live");
  for (const kind of words("liveEvents")) stream.addEventListener(kind, schedule);
  for (const kind of words("liveTopics")) {
    stream.addEventListener(kind, (event) => {
      // The first event of a topic is the state the page was drawn from; later ones (and those
      // after a reconnection, which resumes by Last-Event-ID) are changes.
      const first = !known.has(kind);
      const changed = known.get(kind) !== event.data;
      known.set(kind, event.data);
      if (!first && changed) schedule();
    });
  }
  // Events sent before the stream is open are not heard: "listening" once it is.
  stream.addEventListener("open", () => {
    document.body.dataset.live = "listening";
  });
}

listen();
