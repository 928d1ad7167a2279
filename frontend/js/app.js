// Bootstrap: route the URL to a view, mount it, and unmount the previous one (its listeners go with it).
// A view whose mount answered with `update(route, { signal })` is offered the next route of its own kind
// first: it may draw it in place (the unit page's step to the next unit) or answer null to be mounted again.

import { ApiError } from "./api.js";
import { html, withCode } from "./dom.js";
import { startRouter } from "./router.js";
import { mountConcepts } from "./views/concepts.js";
import { mountHome } from "./views/home.js";
import { mountImage, mountUpload } from "./views/image.js";
import { mountLayer } from "./views/layer.js";
import { mountModel } from "./views/model.js";
import { mountSearch } from "./views/search.js";
import { mountSearchBox } from "./views/search-box.js";
import { mountUnit } from "./views/unit.js";

const VIEWS = { home: mountHome, model: mountModel, layer: mountLayer, unit: mountUnit, image: mountImage,
  upload: mountUpload, search: mountSearch, concepts: mountConcepts };
const root = document.getElementById("view");
const crumbs = document.getElementById("crumbs");
const announcer = document.getElementById("announcer");
let current = null;  // the render in progress: a mount's controller is also its view's
let mounted = null;  // the view on the page: { view, controller (aborted when it goes), update }

async function render(route, { cause, scroll }) {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const mount = VIEWS[route.view];
  const control = root.contains(document.activeElement) ? document.activeElement.getAttribute("name") : null;
  let title;
  try {
    if (!mount) throw new ApiError(404, "not_found", route.params.reason ?? `No page at ${route.params.path}.`);
    let meta = null;
    if (mounted?.view === route.view && mounted.update) {
      const signal = AbortSignal.any([controller.signal, mounted.controller.signal]);
      meta = await mounted.update(route, { signal });
      if (controller.signal.aborted) return;
    }
    if (meta) {
      mounted.update = meta.update;
    } else {
      mounted?.controller.abort();
      mounted = { view: route.view, controller, update: null };
      meta = await mount(root, { ...route, signal: controller.signal });
      if (controller.signal.aborted) return;
      mounted.update = meta.update ?? null;
    }
    current = null;  // drawn: the next render aborts what it must (a mount's controller is its view's)
    title = meta.title;
    document.title = meta.title === "Models" ? "Fovea" : `${meta.title} · Fovea`;
    const last = meta.crumbs.length - 1;
    crumbs.innerHTML = html`${meta.crumbs.map((c, i) => html`<span class="sep" aria-hidden="true">/</span><a
      href="${c.href}" ${i === last ? html`aria-current="page"` : ""}>${c.label}</a>`)}`;
    root.dataset.view = route.view;
  } catch (error) {
    if (error.name === "AbortError" || controller.signal.aborted) return;
    mounted?.controller.abort();  // the error page replaces whatever view was there
    mounted = null;
    title = error.status === 404 ? "Not found" : "Something went wrong";
    document.title = `${title} · Fovea`;
    crumbs.innerHTML = "";
    root.dataset.view = "error";
    root.innerHTML = html`<section class="problem">
      <h1>${title}</h1>
      <p class="error-text">${withCode(error.message)}</p>
      <p><a href="/">Back to all models</a></p>
    </section>`;
  }
  settle(cause, scroll, title, control);
}

// After a view is drawn: a new page is announced and its heading takes focus (a screen reader starts
// there; the next Tab goes into the page), unless the user is already typing in a field (the unit box,
// the search box: the next unit's number goes where it was typed); the same page redrawn gives focus back
// to the control the user was on; then the page scrolls where the history entry was.
const TEXT_FIELDS = "input:not([type=checkbox], [type=radio], [type=range], [type=button], [type=submit]), textarea";

function settle(cause, scroll, title, control) {
  if (cause === "push" || cause === "pop") {
    const heading = root.querySelector("h1");
    if (heading && !document.activeElement?.matches(TEXT_FIELDS)) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
    announcer.textContent = "";
    setTimeout(() => { announcer.textContent = title; }, 50);  // a change, even when the title is the same
  } else if (cause === "refresh" && control) {
    root.querySelector(`[name="${CSS.escape(control)}"]`)?.focus({ preventScroll: true });
  }
  if (scroll !== null) window.scrollTo(0, scroll);
}

mountSearchBox(document.getElementById("search-box"));
startRouter(render);
