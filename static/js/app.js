// Our few behaviours: sidebar and drawer, optimistic credit counter, image preview and
// mask drawing, and the upgrade modal's focus handling. htmx does the rest.
(function () {
  "use strict";
  const body = document.body;
  let opener = null;

  // Sidebar: collapse (saved per user by the toggle's hx-post) and the mobile drawer.
  document.addEventListener("click", function (event) {
    const toggle = event.target.closest("[data-sidebar-toggle]");
    if (toggle) {
      const collapsed = body.classList.toggle("sidebar-collapsed");
      toggle.setAttribute("aria-expanded", String(!collapsed));
    }
    const drawer = event.target.closest("[data-drawer-toggle]");
    if (drawer) setDrawer(!body.classList.contains("drawer-open"));
    if (event.target.closest("[data-drawer-close]")) setDrawer(false);
    if (event.target.closest("[data-close-modal]")) setTimeout(closeModal, 0);
    else if (event.target.matches("[data-modal]")) dismissModal();
  }, true);

  function setDrawer(open) {
    body.classList.toggle("drawer-open", open);
    const button = document.querySelector("[data-drawer-toggle]");
    if (button) button.setAttribute("aria-expanded", String(open));
    const backdrop = document.querySelector("[data-drawer-close]");
    if (backdrop) backdrop.hidden = !open;
    if (open) { const link = document.querySelector("#sidebar a"); if (link) link.focus(); }
    else if (button && document.activeElement && document.activeElement.closest("#sidebar")) button.focus();
  }

  // The collapse toggle tells the server the state it just switched to (no inline script:
  // the Content-Security-Policy allows none).
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.elt.matches("[data-sidebar-toggle]")) {
      event.detail.parameters.collapsed = String(body.classList.contains("sidebar-collapsed"));
    }
  });

  // The counter polls every 4 s while the live socket is down, and when the tab comes back.
  function pollCredits() {
    const counter = document.getElementById("sidebar-credits");
    if (counter && window.htmx) htmx.trigger(counter, "credits-poll");
  }
  setInterval(function () { if (body.classList.contains("live-down")) pollCredits(); }, 4000);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") pollCredits();
  });

  // Live updates: poll only while the socket is down (htmx's ws extension reconnects with
  // exponential backoff and full jitter). The socket counts as live once it has sent the
  // counter: while the server has lost Redis it sends the counter and closes (1013), so the
  // page keeps polling until a reconnect stays open.
  document.addEventListener("htmx:wsAfterMessage", function () { body.classList.remove("live-down"); });
  document.addEventListener("htmx:wsClose", function () { body.classList.add("live-down"); });
  document.addEventListener("htmx:wsError", function () { body.classList.add("live-down"); });

  // Optimistic counter: show the spend at once; the response's out-of-band counter is the truth.
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (!event.detail.elt.matches("[data-spends-credit]")) return;
    const counter = document.getElementById("sidebar-credits");
    if (!counter || counter.dataset.unlimited === "true") return;
    const remaining = Number(counter.dataset.remaining), total = counter.dataset.total;
    const number = counter.querySelector("[data-credit-number]");
    const text = counter.querySelector("[data-credit-text]");
    if (!number || remaining <= 0) return;
    number.textContent = (remaining - 1) + "/" + total;
    if (text) text.textContent = (remaining - 1) + " of " + total + " credits remaining";
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    const status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (event.detail.elt.matches("[data-spends-credit]") && status !== 200) {
      htmx.ajax("GET", "/dashboard/credits", { target: "#sidebar-credits", swap: "outerHTML" });
    }
  });

  // Image preview, and for remove-object a rectangle dragged over it.
  document.addEventListener("change", function (event) {
    const input = event.target;
    if (!input.matches("[data-preview-target]") || !input.files[0]) return;
    const img = document.querySelector(input.dataset.previewTarget);
    if (!img) return;
    img.src = URL.createObjectURL(input.files[0]);
    img.hidden = false;
    const empty = document.querySelector(".mask-empty");
    if (empty) empty.hidden = true;
  });

  let drag = null;
  document.addEventListener("pointerdown", function (event) {
    const stage = event.target.closest("[data-mask-stage]");
    if (!stage || event.target.tagName !== "IMG") return;
    const box = stage.getBoundingClientRect();
    drag = { stage: stage, img: event.target, x: event.clientX - box.left, y: event.clientY - box.top };
    event.preventDefault();
  });
  document.addEventListener("pointermove", function (event) { if (drag) drawMask(event); });
  document.addEventListener("pointerup", function (event) { if (drag) { drawMask(event); drag = null; } });

  function drawMask(event) {
    const img = drag.img.getBoundingClientRect(), stage = drag.stage.getBoundingClientRect();
    const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
    const x2 = clamp(event.clientX - stage.left, img.left - stage.left, img.right - stage.left);
    const y2 = clamp(event.clientY - stage.top, img.top - stage.top, img.bottom - stage.top);
    const left = Math.min(drag.x, x2), top = Math.min(drag.y, y2);
    const width = Math.abs(x2 - drag.x), height = Math.abs(y2 - drag.y);
    const box = drag.stage.querySelector("[data-mask-box]");
    Object.assign(box.style, { left: left + "px", top: top + "px", width: width + "px", height: height + "px" });
    box.hidden = false;
    const offsetX = img.left - stage.left, offsetY = img.top - stage.top;
    const form = drag.stage.closest("form");
    const set = (key, value) => { form.querySelector("[data-mask-" + key + "]").value = (100 * value).toFixed(1); };
    set("x", clamp((left - offsetX) / img.width, 0, 1));
    set("y", clamp((top - offsetY) / img.height, 0, 1));
    set("w", clamp(width / img.width, 0, 1));
    set("h", clamp(height / img.height, 0, 1));
  }

  // The upgrade modal: focus in, trapped, Esc and Maybe Later close it and return focus.
  function closeModal() {
    const root = document.getElementById("modal-root");
    if (!root || !root.firstElementChild) return;
    root.innerHTML = "";
    // A form cannot take focus: return it to the form's submit button.
    const target = opener && opener.matches("form") ? opener.querySelector("[type=submit]") : opener;
    if (target && document.contains(target)) target.focus();
    opener = null;
  }

  function dismissModal() {
    const later = document.querySelector("#modal-root [data-close-modal]");
    if (later) later.click(); else closeModal();
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target.id !== "modal-root") return;
    opener = event.detail.requestConfig && event.detail.requestConfig.elt;
    const dialog = event.detail.target.querySelector('[role="dialog"]');
    const first = dialog && dialog.querySelector("a[href], button");
    if (first) first.focus(); else if (dialog) dialog.focus();
  });

  function trapTab(event, container) {
    const focusable = container.querySelectorAll("a[href], button:not([disabled]), input, select");
    const first = focusable[0], last = focusable[focusable.length - 1];
    if (event.shiftKey && document.activeElement === first) { last.focus(); event.preventDefault(); }
    else if (!event.shiftKey && document.activeElement === last) { first.focus(); event.preventDefault(); }
  }

  document.addEventListener("keydown", function (event) {
    const drawerOpen = body.classList.contains("drawer-open");
    if (event.key === "Escape" && drawerOpen) setDrawer(false);
    if (event.key === "Tab" && drawerOpen && !document.querySelector("#modal-root [role=dialog]")) {
      trapTab(event, document.getElementById("sidebar"));
      return;
    }
    const dialog = document.querySelector('#modal-root [role="dialog"]');
    if (!dialog) return;
    if (event.key === "Escape") { dismissModal(); return; }
    if (event.key === "Tab") trapTab(event, dialog);
  });
})();
