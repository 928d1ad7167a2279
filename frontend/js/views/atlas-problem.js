// What a layer or unit page shows when there is no atlas yet: the command to build one (a state to act on, not
// a failure: the model's maps and CAMs need none), or the progress of the build under way (re-checked every few
// seconds); any other error as an error.

import { html, withCode } from "../dom.js";
import { atlasQuery, pageUrl, withQuery } from "../urls.js";

const isBuilding = (error) => error.status === 409 && /being built/.test(error.message);
const isMissing = (error) => !isBuilding(error) && error.code === "atlas_missing";

/** The error's message: a state to act on (no atlas yet, or one being built) in plain text, anything else red. */
export function problemLine(error) {
  const state = isBuilding(error) || isMissing(error);
  return html`<p class="${state ? "muted" : "error-text"}">${isMissing(error) ? html`<b>No atlas yet:</b> ` : ""}${withCode(error.message)}</p>`;
}

/** `at`: { modelId, layer } where the page is a layer's, to link the kinds of unit it has when it asked for
 *  another (`/m/model/block4/abc` reads "abc" as a kind). */
export function atlasProblem(root, error, { title, signal, at = null }) {
  const building = isBuilding(error);
  const missing = isMissing(error);
  const here = Object.fromEntries(new URLSearchParams(location.search));  // the page's view, on another atlas
  root.innerHTML = html`<section class="problem">
    <h1><code>${title}</code></h1>
    ${problemLine(error)}
    ${building ? html`<p class="muted building">This page reloads when the atlas is ready.</p>` : ""}
    ${at && error.detail?.kinds?.length ? html`<p>Its kinds of unit: ${error.detail.kinds.map((kind, i) => html`${i ? ", " : ""}<a
      href="${pageUrl.layer(at.modelId, at.layer, { ...atlasQuery({ dataset: here.dataset }), kind })}">${kind}</a>`)}; a unit
      is named by its number, as in <a href="${pageUrl.unit(at.modelId, at.layer, 0, { dataset: here.dataset })}"><code>${at.layer}:0</code></a>.</p>` : ""}
    ${missing && error.detail.available?.length ? html`<p>This model's atlases: ${error.detail.available.map((dataset, i) =>
      html`${i ? ", " : ""}<a href="${withQuery(location.pathname, { ...here, dataset })}">${dataset}</a>`)}.</p>` : ""}
    ${missing ? html`<p class="muted small">An atlas records every unit's top images and statistics over a dataset,
      once; until then the model's maps and CAMs on any image work without one (<a href="/image">Study an image</a>).</p>` : ""}
  </section>`;
  if (building) {
    const timer = setTimeout(() => window.dispatchEvent(new Event("fovea:navigate")), 3000);
    signal.addEventListener("abort", () => clearTimeout(timer));
  }
}
