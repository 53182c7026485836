// The pages' behaviour on top of plain forms: everything here is an enhancement; every form
// works without it.

const THEME_KEY = "agentops-theme";

function currentTheme() {
  const set = document.documentElement.dataset.theme;
  if (set) return set;
  return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function setUpThemeToggle() {
  for (const button of document.querySelectorAll("[data-theme-toggle]")) {
    const label = () => {
      button.textContent = currentTheme() === "dark" ? "Light theme" : "Dark theme";
    };
    label();
    button.addEventListener("click", () => {
      const next = currentTheme() === "dark" ? "light" : "dark";
      document.documentElement.dataset.theme = next;
      try {
        window.localStorage.setItem(THEME_KEY, next);
      } catch (_) {
        // Not kept across pages when storage is off; the toggle still works here.
      }
      label();
    });
  }
}

function setUpSubmitOnChange() {
  for (const field of document.querySelectorAll("[data-submit-on-change]")) {
    field.addEventListener("change", () => field.form.requestSubmit());
  }
  document.documentElement.classList.add("js");
}

function setUpConfirmations() {
  // On the document, not on each form: live-region.js may swap a form in after the page loaded.
  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}

function setUpBulkSelection() {
  for (const form of document.querySelectorAll("form[data-bulk]")) {
    const all = form.querySelector("[data-select-all]");
    const boxes = () => form.querySelectorAll("input[name=agent]");
    if (all) {
      all.addEventListener("change", () => {
        for (const box of boxes()) box.checked = all.checked;
      });
    }
  }
}

setUpThemeToggle();
setUpSubmitOnChange();
setUpConfirmations();
setUpBulkSelection();
