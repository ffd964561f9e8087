// Skylift console: the few things a server-rendered page cannot do by itself.
// Confirmation before destructive actions, live parts that refresh without a reload, and uploads
// with a progress bar. No library; every request that changes something carries the CSRF token.
"use strict";

(function () {
  const csrf = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  };

  // Destructive actions ask first.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    const question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // Live parts: an element with data-live="URL" is replaced by what the URL answers, every few seconds,
  // until an answer no longer asks for it (a finished campaign).
  const live = (element) => {
    const source = element.getAttribute("data-live");
    const every = Number(element.getAttribute("data-interval") || "2000");
    if (!source) return;
    window.setTimeout(() => {
      fetch(source, { headers: { "X-CSRF-Token": csrf(), "Accept": "text/html" }, credentials: "same-origin" })
        .then((response) => {
          if (response.status === 401) {
            window.location.reload();
            return null;
          }
          return response.ok ? response.text() : null;
        })
        .then((html) => {
          if (html === null) {
            live(element);
            return;
          }
          const holder = document.createElement("div");
          holder.innerHTML = html;
          const fresh = holder.firstElementChild;
          if (!fresh) return;
          element.replaceWith(fresh);
          live(fresh);
        })
        .catch(() => live(element));
    }, every);
  };
  document.querySelectorAll("[data-live]").forEach(live);

  // Uploads with a progress bar: the form's files go with XMLHttpRequest (fetch reports no upload progress).
  const showErrors = (form, errors) => {
    form.querySelectorAll(".error.sent").forEach((node) => node.remove());
    Object.entries(errors).forEach(([name, message]) => {
      const field = name ? form.querySelector(`[data-field="${CSS.escape(name)}"]`) : null;
      const note = document.createElement(field ? "span" : "p");
      note.className = field ? "error sent" : "error general sent";
      note.setAttribute("role", "alert");
      note.textContent = message;
      if (field) {
        field.classList.add("invalid");
        const hint = field.querySelector(".hint");
        field.insertBefore(note, hint);
      } else {
        form.prepend(note);
      }
    });
  };

  document.querySelectorAll("form[data-upload]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = new FormData(form);
      data.delete("csrf");
      const bar = form.querySelector("progress");
      const label = form.querySelector(".progress-label");
      const button = form.querySelector('button[type="submit"]');
      const request = new XMLHttpRequest();
      request.open("POST", form.action);
      request.setRequestHeader("X-CSRF-Token", csrf());
      request.setRequestHeader("Accept", "application/json");
      request.upload.addEventListener("progress", (progress) => {
        if (!progress.lengthComputable || !bar) return;
        const percent = Math.round((100 * progress.loaded) / progress.total);
        bar.value = percent;
        if (label) label.textContent = `${percent} %`;
      });
      request.addEventListener("load", () => {
        if (button) button.disabled = false;
        let answer = {};
        try {
          answer = JSON.parse(request.responseText);
        } catch (error) {
          answer = { errors: { "": request.statusText || String(request.status) } };
        }
        if (answer.redirect) {
          window.location.assign(answer.redirect);
          return;
        }
        if (bar) bar.value = 0;
        if (label) label.textContent = "";
        showErrors(form, answer.errors || {});
      });
      request.addEventListener("error", () => {
        if (button) button.disabled = false;
        showErrors(form, { "": form.getAttribute("data-failed") || "upload failed" });
      });
      if (button) button.disabled = true;
      if (bar) bar.hidden = false;
      request.send(data);
    });
  });
})();
