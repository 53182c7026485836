// The policy editor: the labels name the format the "Written in" choice says the text is in.
// The form works without this; the page then names the format it was rendered in.

for (const choice of document.querySelectorAll("select[data-policy-format]")) {
  const names = choice.form.querySelectorAll("[data-format-name]");
  choice.addEventListener("change", () => {
    const name = choice.options[choice.selectedIndex].textContent;
    for (const label of names) label.textContent = name;
  });
}
