// The batch page: rejecting asks first, in the page. The form that asks (data-confirm-dialog) posts
// without `confirm`, so without this script the server answers with its own confirmation step and a
// stray request changes nothing; with it, the dialog opens instead and its own form confirms.
"use strict";

document.querySelectorAll("form[data-confirm-dialog]").forEach((form) => {
  const dialog = document.getElementById(form.dataset.confirmDialog);
  if (!dialog || typeof dialog.showModal !== "function") return;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    dialog.showModal();
    const keep = dialog.querySelector("[data-close-dialog]");
    if (keep) keep.focus(); // the safe choice has the focus: Enter keeps the batch
  });
  dialog.querySelectorAll("[data-close-dialog]").forEach((button) => {
    button.addEventListener("click", () => dialog.close());
  });
});
