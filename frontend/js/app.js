// Bootstrap: route the URL to a view, mount it, and unmount the previous one (its listeners go with it).

import { ApiError } from "./api.js";
import { html } from "./dom.js";
import { startRouter } from "./router.js";
import { mountHome } from "./views/home.js";
import { mountImage, mountUpload } from "./views/image.js";
import { mountLayer } from "./views/layer.js";
import { mountModel } from "./views/model.js";
import { mountUnit } from "./views/unit.js";

const VIEWS = { home: mountHome, model: mountModel, layer: mountLayer, unit: mountUnit, image: mountImage,
  upload: mountUpload };
const root = document.getElementById("view");
const crumbs = document.getElementById("crumbs");
let current = null;

async function render(route) {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const mount = VIEWS[route.view];
  try {
    if (!mount) throw new ApiError(404, "not_found", `No page at ${route.params.path}.`);
    const meta = await mount(root, { ...route, signal: controller.signal });
    if (controller.signal.aborted) return;
    document.title = meta.title === "Models" ? "Fovea" : `${meta.title} · Fovea`;
    crumbs.innerHTML = html`${meta.crumbs.map((c) => html`<span class="sep">/</span><a href="${c.href}">${c.label}</a>`)}`;
    root.dataset.view = route.view;
  } catch (error) {
    if (error.name === "AbortError" || controller.signal.aborted) return;
    document.title = "Not found · Fovea";
    crumbs.innerHTML = "";
    root.dataset.view = "error";
    root.innerHTML = html`<section class="problem">
      <h1>${error.status === 404 ? "Not found" : "Something went wrong"}</h1>
      <p class="error-text">${error.message}</p>
      <p><a href="/">Back to all models</a></p>
    </section>`;
  }
}

startRouter(render);
