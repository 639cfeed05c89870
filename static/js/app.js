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

  // One live truth: the counter fragment (first paint, polls, socket pushes) carries every
  // credit text of the page in a <template data-credit-texts>; after each swap they are
  // copied into the page's [data-live-text] elements. A change of plan (Free <-> Pro) is
  // announced as `plan-changed` on body (the subscription page reloads its plan part), and
  // every change as `credits-changed`.
  let creditState = null;
  function syncCreditTexts() {
    const counter = document.getElementById("sidebar-credits");
    if (!counter) return;
    const state = [counter.dataset.remaining, counter.dataset.total, counter.dataset.unlimited].join("|");
    const texts = counter.querySelector("template[data-credit-texts]");
    if (texts) {
      texts.content.querySelectorAll("[data-text]").forEach(function (source) {
        document.querySelectorAll('[data-live-text="' + source.dataset.text + '"]').forEach(function (target) {
          if (target.innerHTML !== source.innerHTML) target.innerHTML = source.innerHTML;
        });
      });
    }
    if (creditState === null || creditState === state) { creditState = state; return; }
    const planChanged = creditState.split("|")[2] !== counter.dataset.unlimited;
    creditState = state;
    htmx.trigger(body, "credits-changed");
    if (planChanged) htmx.trigger(body, "plan-changed");
  }
  document.addEventListener("DOMContentLoaded", syncCreditTexts);
  document.addEventListener("htmx:afterSettle", syncCreditTexts);
  document.addEventListener("htmx:oobAfterSwap", syncCreditTexts);

  // Results: a pending generation reloads itself when a push says this user's ledger moved
  // (every generation ends with a ledger row), on a counter change seen by polling, and
  // every 3 s while the socket is down; a slow safety poll covers a lost message.
  function checkPendingGenerations() {
    document.querySelectorAll("[data-generation-pending]").forEach(function (pending) {
      if (!pending.classList.contains("htmx-request")) htmx.trigger(pending, "generation-check");
    });
  }
  let pushes = 0, pushesAtSend = null;
  document.addEventListener("htmx:wsAfterMessage", function () { pushes += 1; setTimeout(checkPendingGenerations, 0); });
  document.addEventListener("credits-changed", checkPendingGenerations);
  setInterval(function () { if (body.classList.contains("live-down")) checkPendingGenerations(); }, 3000);
  setInterval(checkPendingGenerations, 20000);

  // After Generate: bring the progress, then the result, into view and move focus to it,
  // unless the user has gone on to something else meanwhile.
  const motion = window.matchMedia("(prefers-reduced-motion: reduce)");
  function reveal(element) {
    const active = document.activeElement;
    const idle = !active || active === body || active.closest("#feature-form, #generation-result");
    if (!idle) return;
    const box = element.getBoundingClientRect();
    if (box.top < 0 || box.top > window.innerHeight - 80) {
      element.scrollIntoView({ block: "start", behavior: motion.matches ? "auto" : "smooth" });
    }
    element.focus({ preventScroll: true });
  }
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail.elt.matches("[data-spends-credit]")) pushesAtSend = pushes;
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    const settled = event.target;
    if (!settled.closest || !settled.closest("#generation-result")) return;
    const generation = document.querySelector("#generation-result .generation");
    if (!generation) return;
    const started = pushesAtSend !== null;
    if (started || !generation.hasAttribute("data-generation-pending")) reveal(generation);
    // A push that came while the request was on its way may already have been the end.
    if (started && pushes > pushesAtSend) setTimeout(checkPendingGenerations, 0);
    pushesAtSend = null;
  });

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
    document.querySelectorAll("[data-short-number]").forEach(function (short) { short.textContent = number.textContent; });
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    const status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (event.detail.elt.matches("[data-spends-credit]") && status !== 200) {
      htmx.ajax("GET", "/dashboard/credits", { target: "#sidebar-credits", swap: "outerHTML" });
    }
  });

  // Uploads: type and size are checked here, before anything is sent; the message sits
  // under the field (#image-error, where the server's own refusal goes too).
  function uploadProblem(input, file) {
    const accepted = (input.getAttribute("accept") || "").split(",").map(function (type) { return type.trim(); });
    if (accepted.length && accepted.indexOf(file.type) < 0) {
      return "“" + file.name + "” is not a JPEG, PNG or WebP image. Choose a photo in one of those formats.";
    }
    const limit = Number(input.dataset.maxBytes || 0);
    if (limit && file.size > limit) {
      const megabytes = function (bytes) { return (bytes / 1048576).toFixed(1).replace(/\.0$/, ""); };
      return "“" + file.name + "” is " + megabytes(file.size) + " MB; photos can be up to " + megabytes(limit) + " MB. Choose a smaller one.";
    }
    return "";
  }
  function showUploadError(input, message) {
    const slot = document.getElementById(input.id + "-error");
    if (slot) { slot.textContent = message; slot.hidden = !message; }
    if (message) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
    const field = input.closest(".field");
    if (field) field.classList.toggle("field-invalid", Boolean(message));
  }

  // The chosen photo survives a refused request (the form comes back re-rendered) and, kept
  // in this browser's IndexedDB for an hour, the way through the paywall and checkout. It is
  // forgotten once a generation starts, or on sign-out.
  const KEEP_MS = 3600 * 1000;
  let keptFiles = null;
  function keptPhotos(mode, action) {
    return new Promise(function (resolve) {
      if (!window.indexedDB) { resolve(null); return; }
      const opening = indexedDB.open("roomcraft", 1);
      opening.onupgradeneeded = function () { opening.result.createObjectStore("kept"); };
      opening.onerror = function () { resolve(null); };
      opening.onsuccess = function () {
        const transaction = opening.result.transaction("kept", mode);
        const request = action(transaction.objectStore("kept"));
        transaction.oncomplete = function () { resolve(request ? request.result : null); opening.result.close(); };
        transaction.onerror = function () { resolve(null); opening.result.close(); };
      };
    });
  }
  function keepPhoto(form, file) {
    const feature = form.querySelector("[name=feature]");
    keptPhotos("readwrite", function (store) {
      return store.put({ feature: feature ? feature.value : "", at: Date.now(), name: file.name, type: file.type, blob: file }, "photo");
    });
  }
  function forgetPhoto() { keptFiles = null; keptPhotos("readwrite", function (store) { return store.delete("photo"); }); }
  function putFiles(input, files) {
    try { input.files = files; } catch (error) { return false; }
    input.dispatchEvent(new Event("change", { bubbles: true }));
    return true;
  }
  function restorePhoto() {
    const input = document.querySelector("#feature-form [data-keep-file]");
    if (!input || input.files.length) return;
    if (keptFiles && keptFiles.length) { putFiles(input, keptFiles); return; }
    keptPhotos("readonly", function (store) { return store.get("photo"); }).then(function (kept) {
      const feature = document.querySelector("#feature-form [name=feature]");
      if (!kept || !feature || kept.feature !== feature.value || Date.now() - kept.at > KEEP_MS || input.files.length) return;
      const transfer = new DataTransfer();
      transfer.items.add(new File([kept.blob], kept.name, { type: kept.type }));
      if (putFiles(input, transfer.files)) {
        const hint = document.getElementById("image-hint");
        if (hint) hint.textContent = "We kept the photo you chose before: " + kept.name + ".";
      }
    });
  }
  document.addEventListener("DOMContentLoaded", restorePhoto);
  document.addEventListener("htmx:afterSettle", function () { if (keptFiles) restorePhoto(); });
  document.addEventListener("htmx:beforeRequest", function (event) {
    const input = event.detail.elt.matches("[data-spends-credit]") && event.detail.elt.querySelector("[data-keep-file]");
    if (input && input.files.length) keptFiles = input.files;
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    // Started: a 200 into the result panel (the paywall and the verify dialog retarget).
    const xhr = event.detail.xhr;
    if (event.detail.elt.matches("[data-spends-credit]") && xhr && xhr.status === 200 && !xhr.getResponseHeader("HX-Retarget")) forgetPhoto();
  });
  document.addEventListener("submit", function (event) {
    if (event.target.matches("form[action$='/logout']")) forgetPhoto();
  }, true);

  // Image preview, and for remove-object a rectangle dragged over it.
  document.addEventListener("change", function (event) {
    const input = event.target;
    if (input.matches("[data-max-bytes]")) {
      const file = input.files[0];
      const problem = file ? uploadProblem(input, file) : "";
      // A photo put back after a refusal must not hide the server's message about it.
      if (problem || event.isTrusted) showUploadError(input, problem);
      if (problem) {
        input.value = "";
        const preview = document.querySelector(input.dataset.previewTarget);
        if (preview) { preview.hidden = true; preview.removeAttribute("src"); }
        const empty = document.querySelector(".mask-empty");
        if (empty) empty.hidden = false;
        return;
      }
      if (file && input.form) keepPhoto(input.form, file);
    }
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
