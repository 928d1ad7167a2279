// Layer page: a grid of every unit, each drawn as its top image with its heatmap, sortable, loaded in
// pages as it scrolls into view (smooth at thousands of units).

import { getJson } from "../api.js";
import { html } from "../dom.js";
import { decodeMaps, drawHeatmap, loadImage, mapAt } from "../maps.js";
import { navigate } from "../router.js";
import { apiUrl, pageUrl } from "../urls.js";
import { atlasProblem } from "./atlas-problem.js";

const PAGE = 96;
const SORTS = [
  ["unit", "unit index"], ["max_max", "max activation"], ["max_mean", "mean of image max"],
  ["mean_mean", "mean activation"], ["fraction_active", "fraction active"], ["quantile_995", "99.5% quantile"],
];

export async function mountLayer(root, { params, query, signal }) {
  const { model: modelId, layer } = params;
  const state = { sort: SORTS.some(([key]) => key === query.sort) ? query.sort : "unit",
    order: query.order === "desc" ? "desc" : "asc" };
  root.innerHTML = html`<p class="muted">Loading ${layer}…</p>`;
  const model = await getJson(apiUrl.model(modelId), { signal });
  const crumbs = [{ label: model.name, href: pageUrl.model(modelId) }, { label: layer, href: pageUrl.layer(modelId, layer) }];
  const info = model.layers.find((l) => l.name === layer);
  let first;
  try {
    first = await getJson(apiUrl.units(modelId, layer, { ...state, limit: PAGE, maps: true }), { signal });
  } catch (error) {
    if (error.status !== 409 && !(error.status === 404 && info)) throw error;
    atlasProblem(root, error, { title: layer, signal });
    return { title: `${layer} · ${model.name}`, crumbs };
  }
  root.innerHTML = html`
    <section class="page-head">
      <h1><code>${layer}</code></h1>
      <p class="muted">${first.units_total} units · maps ${first.map_shape.join("×")} · ${info ? info.type : ""}
        · dataset <code>${first.dataset}</code></p>
      <div class="toolbar">
        <label>Sort by <select name="sort">${SORTS.map(([key, label]) =>
          html`<option value="${key}" ${key === state.sort ? "selected" : ""}>${label}</option>`)}</select></label>
        <label class="toggle"><input type="checkbox" name="desc" ${state.order === "desc" ? "checked" : ""}> descending</label>
      </div>
    </section>
    <ul class="unit-grid" aria-label="Units"></ul>
    <div class="grid-sentinel" aria-hidden="true"></div>`;

  const grid = root.querySelector(".unit-grid");
  let offset = 0;
  let loading = false;
  const append = (page) => {
    const maps = decodeMaps(page.top_maps);
    // Build the page's cells apart from the document and take their canvases in order: looking each one
    // up in a grid of thousands of cells made every page a long task.
    const template = document.createElement("template");
    template.innerHTML = html`${page.units.map((unit) => unitCell(modelId, layer, unit, state))}`.text;
    const canvases = template.content.querySelectorAll("canvas");
    grid.append(template.content);
    page.units.forEach((unit, i) => {
      if (unit.top_image === null) return;
      const canvas = canvases[i];
      loadImage(apiUrl.datasetImage(page.dataset, unit.top_image, modelId)).then((image) => {
        if (!signal.aborted) drawHeatmap(canvas, image, mapAt(maps, i), { low: 0, high: Math.max(unit.max_max, 1e-6), opacity: 0.55 });
      }).catch(() => canvas.classList.add("is-missing"));
    });
    offset += page.units.length;
  };
  append(first);

  const sentinel = root.querySelector(".grid-sentinel");
  const observer = new IntersectionObserver(async (entries) => {
    if (!entries.some((e) => e.isIntersecting) || loading || offset >= first.units_total) return;
    loading = true;
    try {
      append(await getJson(apiUrl.units(modelId, layer, { ...state, offset, limit: PAGE, maps: true }), { signal }));
    } finally {
      loading = false;
    }
  }, { rootMargin: "600px" });
  observer.observe(sentinel);
  signal.addEventListener("abort", () => observer.disconnect());

  const resort = () => navigate(pageUrl.layer(modelId, layer, {
    sort: state.sort === "unit" ? "" : state.sort, order: state.order === "desc" ? "desc" : "" }), { replace: true, rerender: true });
  root.querySelector("select[name=sort]").addEventListener("change", (event) => {
    state.sort = event.target.value;
    resort();
  }, { signal });
  root.querySelector("input[name=desc]").addEventListener("change", (event) => {
    state.order = event.target.checked ? "desc" : "asc";
    resort();
  }, { signal });
  return { title: `${layer} · ${model.name}`, crumbs };
}

function unitCell(modelId, layer, unit, state) {
  const stat = state.sort === "unit" || state.sort === "max_max" ? `max ${unit.max_max.toFixed(2)}`
    : state.sort === "fraction_active" ? `${(unit.fraction_active * 100).toFixed(0)}% active`
      : `${state.sort.replace("_", " ")} ${Number(unit[state.sort]).toFixed(2)}`;
  return html`<li class="unit-cell ${unit.dead ? "is-dead" : ""}" data-unit="${unit.unit}">
    <a href="${pageUrl.unit(modelId, layer, unit.unit)}">
      <canvas width="112" height="112"></canvas>
      <span class="unit-label"><b>${unit.unit}</b> ${unit.dead ? html`<span class="badge badge-error">dead</span>` : stat}</span>
    </a>
  </li>`;
}
