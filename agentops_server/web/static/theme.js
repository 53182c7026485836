// Applies the chosen theme before the page paints (a classic script in <head>, no inline code).
// "light" or "dark" from localStorage; none: the system's preference, through CSS.
(function applyTheme() {
  try {
    const chosen = window.localStorage.getItem("agentops-theme");
    if (chosen === "light" || chosen === "dark") {
      document.documentElement.dataset.theme = chosen;
    }
  } catch (_) {
    // Storage may be off (private mode): the system's preference applies.
  }
})();
