// The dashboard, live: on the org's stream (GET /live, through live.js), a run that starts or
// changes makes it fetch the page again (at most once a second) and swap in the fresh figures and
// chart data, and once more a little later, for the rollups and prices that the hub works out after
// the run.

import { drawCharts } from "./charts.js";
import { onEvents, onOpen } from "./live.js";

const RUN_KINDS = ["run_started", "run_updated"];
const DEBOUNCE_MS = 1000;
const SETTLE_MS = 3000;

async function refresh() {
  const answer = await fetch(window.location.href, { credentials: "same-origin" });
  if (!answer.ok) return;
  const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
  const incoming = fresh.querySelector("[data-live-dashboard]");
  const current = document.querySelector("[data-live-dashboard]");
  if (!incoming || !current) return;
  // The drawn charts stay (zoom and hidden series with them: charts.js keeps the user's view
  // across redraws); they take the fresh data and are drawn again.
  for (const figure of current.querySelectorAll("[data-chart]")) {
    const next = incoming.querySelector(`[data-chart="${figure.dataset.chart}"]`);
    if (!next) continue;
    figure.querySelector("[data-chart-data]").textContent = next.querySelector("[data-chart-data]").textContent;
    next.replaceWith(figure);
  }
  current.replaceWith(document.adoptNode(incoming));
  drawCharts(incoming);
  document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
}

function listen() {
  // Only for a role that may hold the org's stream (data-stream).
  if (!document.querySelector("[data-live-dashboard][data-stream]")) return;
  let soon = null;
  let later = null;
  const schedule = () => {
    if (soon === null) {
      soon = setTimeout(() => {
        soon = null;
        refresh();
      }, DEBOUNCE_MS);
    }
    clearTimeout(later);
    later = setTimeout(refresh, DEBOUNCE_MS + SETTLE_MS);
  };
  onEvents(RUN_KINDS, schedule);
  onOpen(() => {
    document.body.dataset.live = "listening";
  });
}

listen();
