// The notifications bell, live: listens to the org's stream (GET /live) and, on each new
// version of its `notifications` topic (the first event is the state the page was drawn
// from), fetches /notifications and takes the unread count from its bell. The bell is a plain
// link to that page: without this script the count is the one the page was drawn with.

const TOPIC = "notifications";

function show(bell, unread) {
  const count = bell.querySelector("[data-unread-count]");
  if (!count) return;
  count.textContent = String(unread);
  count.hidden = unread === 0;
  bell.setAttribute("aria-label", `Notifications: ${unread} unread`);
  bell.dataset.unread = String(unread);
}

async function refresh(bell) {
  const answer = await fetch("/notifications", { credentials: "same-origin" });
  if (!answer.ok) return;
  const page = new DOMParser().parseFromString(await answer.text(), "text/html");
  const fresh = page.querySelector("[data-bell] [data-unread-count]");
  if (fresh) show(bell, Number(fresh.textContent.trim()) || 0);
}

function listen() {
  const bell = document.querySelector("[data-bell]");
  if (!bell || !window.EventSource) return;
  const count = bell.querySelector("[data-unread-count]");
  bell.dataset.unread = count ? count.textContent.trim() : "0";
  let known = null;
  const stream = new EventSource("/live");
  stream.addEventListener(TOPIC, (event) => {
    // The first event is the state the page was drawn from; later ones (and those after a
    // reconnection, which resumes by Last-Event-ID) are changes.
    const first = known === null;
    const changed = known !== event.data;
    known = event.data;
    if (!first && changed) refresh(bell);
  });
  bell.dataset.live = "listening";
}

listen();
