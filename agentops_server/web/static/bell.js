// The notifications bell, live, with its dropdown. It listens to the org's stream (GET /live,
// through live.js) and, on each new version of its `notifications` topic, fetches /notifications
// and takes the unread count from that page's bell. Without this script the bell is a plain link to
// that page (and the count the one the page was drawn with); with it, the bell is a button that
// opens a panel of the latest notifications, taken from the same page: each unread one with its
// "Mark read" form, "Mark all read", and a link to the page. The forms are sent with fetch (their
// answer is the notifications page again, which refreshes the panel), so reading keeps you where
// you are. Keyboard: Enter or Space toggles the panel, Escape closes it and returns to the bell.

import { onChanges, onOpen } from "./live.js";

const TOPIC = "notifications";
const LATEST = 5;

function show(bell, unread) {
  const count = bell.querySelector("[data-unread-count]");
  if (!count) return;
  count.textContent = String(unread);
  count.hidden = unread === 0;
  bell.setAttribute("aria-label", `Notifications: ${unread} unread`);
  bell.dataset.unread = String(unread);
}

function fill(panel, page) {
  const list = panel.querySelector("[data-bell-list]");
  const items = [...page.querySelectorAll("[data-notification]")].slice(0, LATEST);
  list.replaceChildren(...items.map((item) => document.adoptNode(item)));
  panel.querySelector("[data-bell-empty]").hidden = items.length > 0;
  const total = page.querySelector("[data-unread-total]");
  panel.querySelector("[data-bell-unread-total]").textContent = total ? total.textContent.trim() : "";
  const readAll = page.querySelector("form[action='/notifications/read-all']");
  const slot = panel.querySelector("[data-bell-read-all]");
  slot.replaceChildren(...(readAll ? [document.adoptNode(readAll)] : []));
}

function take(bell, panel, html) {
  const page = new DOMParser().parseFromString(html, "text/html");
  const fresh = page.querySelector("[data-bell] [data-unread-count]");
  if (fresh) show(bell, Number(fresh.textContent.trim()) || 0);
  if (panel) fill(panel, page);
  bell.dataset.refreshed = String(Number(bell.dataset.refreshed || 0) + 1);
}

async function refresh(bell, panel) {
  const answer = await fetch("/notifications", { credentials: "same-origin" });
  if (answer.ok) take(bell, panel, await answer.text());
}

function setUpPanel(bell, panel) {
  bell.setAttribute("role", "button");
  bell.setAttribute("aria-expanded", "false");
  bell.setAttribute("aria-controls", panel.id);
  const open = (wanted) => {
    panel.hidden = !wanted;
    bell.setAttribute("aria-expanded", String(wanted));
    if (wanted) refresh(bell, panel);
  };
  bell.addEventListener("click", (event) => {
    if (event.ctrlKey || event.metaKey || event.shiftKey) return; // a new tab: the page
    event.preventDefault();
    open(panel.hidden);
  });
  bell.addEventListener("keydown", (event) => {
    if (event.key !== " ") return;
    event.preventDefault();
    open(panel.hidden);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || panel.hidden) return;
    open(false);
    bell.focus();
  });
  document.addEventListener("click", (event) => {
    if (!panel.hidden && !panel.contains(event.target) && !bell.contains(event.target)) open(false);
  });
  panel.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const answer = await fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      body: new URLSearchParams(new FormData(form)),
    });
    if (answer.ok) take(bell, panel, await answer.text());
    bell.focus();
  });
}

function listen() {
  const bell = document.querySelector("[data-bell]");
  if (!bell) return;
  const panel = document.querySelector("[data-bell-panel]");
  if (panel) setUpPanel(bell, panel);
  const count = bell.querySelector("[data-unread-count]");
  bell.dataset.unread = count ? count.textContent.trim() : "0";
  onChanges([TOPIC], () => refresh(bell, panel && !panel.hidden ? panel : null));
  onOpen(() => {
    bell.dataset.live = "listening";
  });
}

listen();
