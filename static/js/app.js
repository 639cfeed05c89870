// Small behaviours htmx does not cover: closing the upgrade modal and keeping focus inside it.
(function () {
  "use strict";
  let opener = null;

  function closeModal() {
    const root = document.getElementById("modal-root");
    if (root) root.innerHTML = "";
    if (opener && document.contains(opener)) opener.focus();
    opener = null;
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target.id !== "modal-root") return;
    opener = document.activeElement;
    const dialog = event.detail.target.querySelector('[role="dialog"]');
    const first = dialog && dialog.querySelector("a, button");
    (first || dialog) && (first || dialog).focus();
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-close-modal]") || event.target.matches("[data-modal]")) {
      closeModal();
    }
  });

  document.addEventListener("keydown", function (event) {
    const dialog = document.querySelector('#modal-root [role="dialog"]');
    if (!dialog) return;
    if (event.key === "Escape") { closeModal(); return; }
    if (event.key !== "Tab") return;
    const focusable = dialog.querySelectorAll("a[href], button:not([disabled])");
    const first = focusable[0], last = focusable[focusable.length - 1];
    if (event.shiftKey && document.activeElement === first) { last.focus(); event.preventDefault(); }
    else if (!event.shiftKey && document.activeElement === last) { first.focus(); event.preventDefault(); }
  });
})();
