// The approvals queue, live: listens to the org's stream (GET /live, through live.js) and reloads
// the list of pending requests when a request is asked or decided. A list with a decision being
// written is left alone: a notice offers to reload instead.

import { onChanges, onEvents, onOpen } from "./live.js";

// Passing events: each one is news.
const PASSING_KINDS = ["approval_requested", "approval_decided"];
// Topics: the stream first sends the state the page was drawn from, then each new version.
const TOPIC_KINDS = ["approvals", "notifications"];

function queueOf(root) {
  return root.querySelector("[data-live-queue]");
}

function busy(queue) {
  const active = document.activeElement;
  if (active && queue.contains(active) && active.matches("input, textarea")) return true;
  return [...queue.querySelectorAll("textarea")].some((field) => field.value !== field.defaultValue)
    || [...queue.querySelectorAll("input[name=comment]")].some((field) => field.value !== "")
    || [...queue.querySelectorAll("input[data-bulk-select]")].some((box) => box.checked);
}

async function reload(queue, notice) {
  if (busy(queue)) {
    notice.hidden = false;
    return;
  }
  const answer = await fetch(window.location.pathname, { credentials: "same-origin" });
  if (!answer.ok) return;
  const fresh = queueOf(new DOMParser().parseFromString(await answer.text(), "text/html"));
  if (fresh) queue.replaceWith(document.adoptNode(fresh));
  const count = document.querySelector("[data-pending-count]");
  const pending = document.querySelectorAll("[data-live-queue] [data-approval]").length;
  if (count) count.textContent = String(pending);
}

function listen() {
  const queue = queueOf(document);
  const notice = document.querySelector("[data-queue-changed]");
  if (!queue || !notice) return;
  onEvents(PASSING_KINDS, () => reload(queueOf(document), notice));
  onChanges(TOPIC_KINDS, () => reload(queueOf(document), notice));
  onOpen(() => {
    document.body.dataset.live = "listening";
  });
}

listen();
