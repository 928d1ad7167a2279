// The atlas a page shows, named on every atlas page; where the model has atlases on several datasets, a
// picker that moves the page to another (its URL's `dataset` changes, so the link says which).

import { html } from "../dom.js";

/** The dataset's name, or a labelled select of the model's atlases (`atlases` from /api/models/{m}/atlases). */
export function datasetPicker(atlases, current) {
  if (atlases.length < 2) return html`dataset <code>${current}</code>`;
  return html`<label class="dataset-picker">dataset <select name="dataset">${atlases.map((atlas) => html`
    <option value="${atlas.dataset}" ${atlas.dataset === current ? "selected" : ""}>${atlas.dataset} (${atlas.images} images${atlas.default ? ", default" : ""})</option>`)}
  </select></label>`;
}

/** Call `go(dataset)` when the picker inside `root` changes. */
export function onDatasetPicked(root, signal, go) {
  root.querySelector("select[name=dataset]")?.addEventListener("change", (event) => go(event.target.value), { signal });
}
