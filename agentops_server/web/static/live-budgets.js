// The budgets' bars, live: listens to the org's stream (GET /live, through live.js) and, when a
// budget's figures change (the stream's budget_charged events) or its definition does (the budgets
// topic), fetches the page again and swaps in the fresh bars (forms are outside them).

import { onChanges, onEvents, onOpen } from "./live.js";

const PASSING_KINDS = ["budget_charged"];
// Topics: the stream first sends the state the page was drawn from, then each new version.
const TOPIC_KINDS = ["budgets"];

let pending = null;

async function refresh() {
  // The live part holds the bars and figures, never a form: it is swapped whole.
  const answer = await fetch(window.location.pathname, { credentials: "same-origin" });
  if (!answer.ok) return;
  const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
  const list = document.querySelector("[data-live-budgets]");
  const freshList = fresh.querySelector("[data-live-budgets]");
  if (list && freshList) list.replaceWith(document.adoptNode(freshList));
}

function schedule() {
  // Many charges in a burst make one request.
  if (pending) return;
  pending = window.setTimeout(() => {
    pending = null;
    refresh();
  }, 250);
}

function listen() {
  if (!document.querySelector("[data-live-budgets]")) return;
  onEvents(PASSING_KINDS, schedule);
  onChanges(TOPIC_KINDS, schedule);
  onOpen(() => {
    document.body.dataset.live = "listening";
  });
}

listen();
