// outrider dashboard: the few things htmx does not do. The page works without this file,
// only not live. No inline script anywhere: the page's Content-Security-Policy forbids it.
(() => {
  "use strict";
  document.body.classList.remove("no-script"); // live updates and actions from here on
  let lastId = "";
  let stick = true; // the output pane follows new lines while it is scrolled to its end

  const live = () => document.getElementById("live");

  // -- live state: connected, reconnecting, paused -------------------------------------------
  document.addEventListener("htmx:sse:after:connection", () => document.body.classList.remove("connecting"));
  document.addEventListener("htmx:sse:error", () => document.body.classList.add("connecting"));
  document.addEventListener("htmx:sse:after:message", (event) => {
    const id = event.detail?.message?.id;
    if (id) lastId = id;
  });

  function pause(button) {
    const element = live();
    if (!element) return;
    button.setAttribute("aria-pressed", "true");
    button.textContent = "Resume";
    document.body.classList.add("paused");
    element.remove(); // htmx closes the stream when its element goes
  }

  function resume(button) {
    const template = document.createElement("div");
    template.id = "live";
    template.hidden = true;
    const base = document.body.dataset.liveUrl;
    const url = lastId ? base.replace(/([?&]after=)\d+/, `$1${lastId}`) : base;
    template.setAttribute("hx-sse:connect", url);
    template.setAttribute("hx-swap", "none");
    document.body.append(template);
    htmx.process(template);
    button.setAttribute("aria-pressed", "false");
    button.textContent = "Pause";
    document.body.classList.remove("paused");
  }

  document.addEventListener("click", (event) => {
    const pauseButton = event.target.closest("#pause");
    if (pauseButton) {
      pauseButton.getAttribute("aria-pressed") === "true" ? resume(pauseButton) : pause(pauseButton);
      return;
    }
    const copy = event.target.closest("[data-copy]");
    if (copy) {
      const source = document.querySelector(copy.dataset.copy);
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText(source.textContent.trim()).then(() => {
          copy.textContent = "Copied";
          setTimeout(() => { copy.textContent = "Copy"; }, 1500);
        });
      } else if (source) {
        window.getSelection().selectAllChildren(source);
      }
    }
  });

  // -- elapsed times tick between updates -----------------------------------------------------
  function duration(seconds) {
    if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
    if (seconds < 60) return `${seconds.toFixed(1)}s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes}m ${String(Math.floor(seconds % 60)).padStart(2, "0")}s`;
    return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, "0")}m`;
  }

  setInterval(() => {
    const now = Date.now() / 1000;
    for (const cell of document.querySelectorAll("[data-since]")) {
      cell.textContent = duration(Math.max(0, now - Number(cell.dataset.since)));
    }
  }, 1000);

  // -- the output pane stays at its end while the user has not scrolled up --------------------
  document.addEventListener("scroll", (event) => {
    const pane = event.target;
    if (pane instanceof Element && pane.id === "output") {
      stick = pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 24;
    }
  }, true);

  function follow() {
    const pane = document.getElementById("output");
    if (pane && stick) pane.scrollTop = pane.scrollHeight;
  }

  document.addEventListener("htmx:after:swap", () => {
    follow();
    const flash = document.getElementById("flash");
    if (flash && flash.firstElementChild) {
      const shown = flash.firstElementChild;
      setTimeout(() => { if (shown.isConnected) shown.remove(); }, 6000);
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    const element = live();
    if (element) document.body.dataset.liveUrl = element.dataset.live;
    follow();
  });
})();
