// Layer page: a grid of every unit, each drawn as its top image with its heatmap (outlined above the unit's
// 99.5% quantile, scaled to the unit's own maximum or to the layer's, with a colour scale that says which),
// sortable by the statistics the server lists (/api/statistics); units are fetched in pages as the grid
// first shows them, and only the rows near the viewport exist (virtual-grid.js). The page's state, from and
// to its URL, is layer-view.js.

import { renderColorScale } from "../color-scale.js";
import { getJson } from "../api.js";
import { forgetAtlases, layerUnits, modelAtlases, modelCard } from "../data.js";
import { html, runnable } from "../dom.js";
import { indexedOrder } from "../layer-nav.js";
import { LAYER_DEFAULTS, layerQuery, layerViewState, unitsQuery } from "../layer-view.js";
import { decodeMaps, drawHeatmap, loadImage, mapAt } from "../maps.js";
import { navigate } from "../router.js";
import { taskQueue } from "../task-queue.js";
import { CHANNEL, apiUrl, atlasQuery, pageUrl } from "../urls.js";
import { virtualGrid } from "../virtual-grid.js";
import { formatStatistic, layerSorts } from "../vocabularies.js";
import { atlasProblem } from "./atlas-problem.js";
import { datasetPicker, onDatasetPicked } from "./dataset-picker.js";
import { mountLayerBar } from "./layer-bar.js";
import { kindName, kindSwitch } from "./features.js";
import { layerRole } from "./layer-role.js";
import { chipTitle } from "./unit-labels.js";

const PAGE = 96;
const RENDERS_AT_ONCE = 4;  // feature visualisations the grid asks for at once
const GRID_OPACITY = 0.75;
const GRID_GAMMA = 1;  // low values fade linearly (drawHeatmap)

export async function mountLayer(root, { params, query, signal }) {
  const { model: modelId, layer } = params;
  root.innerHTML = html`<p class="muted">Loading ${layer}…</p>`;
  const [model, atlases, sorts] = await Promise.all([modelCard(modelId, { signal }), modelAtlases(modelId, { signal }),
    layerSorts({ signal })]);
  const state = layerViewState(query, sorts.map((sort) => sort.id));
  const atlas = atlasQuery(state);
  const crumbs = [{ label: model.name, href: pageUrl.model(modelId, { dataset: state.dataset }) },
    { label: state.kind === CHANNEL ? layer : `${layer} ${kindName(state.kind)}`, href: pageUrl.layer(modelId, layer, atlas) }];
  const info = model.layers.find((l) => l.name === layer);
  let first;
  let layerMax = null;  // with one scale for the layer: its strongest unit's maximum
  try {
    [first, layerMax] = await Promise.all([layerUnits(modelId, layer, unitsQuery(state, { limit: PAGE }), { signal }),
      state.scale === "layer" ? layerUnits(modelId, layer, { ...atlas, sort: "max_max", order: "desc", limit: 1 },
        { signal }).then((top) => top.units[0].max_max) : null]);
  } catch (error) {
    if (error.status !== 409 && !(error.status === 404 && info)) throw error;
    forgetAtlases(modelId);  // the atlas may be on its way: the next look asks again
    atlasProblem(root, error, { title: layer, signal, at: { modelId, layer } });
    return { title: `${layer} · ${model.name}`, crumbs };
  }
  if (!state.dataset) { // a link that named no dataset: name the one shown, so a copied link keeps showing it
    state.dataset = first.dataset;
    navigate(pageUrl.layer(modelId, layer, layerQuery(state)), { replace: true });
  }
  root.innerHTML = html`
    <section class="page-head">
      <h1><code>${layer}</code>${state.kind === CHANNEL ? "" : html` <span class="kind-title">${kindName(state.kind)}</span>`}</h1>
      <p class="muted">${first.units_total} ${state.kind === CHANNEL ? "units" : "features"} · maps ${first.map_shape.join("×")} · ${info ? info.type : ""}
        · ${datasetPicker(atlases, first.dataset)}</p>
      ${kindSwitch(first.kinds, state.kind, { modelId, layer, query: { dataset: first.dataset } })}
      ${info ? html`<p class="muted layer-role">${layerRole(model.layers, layer)}</p>` : ""}
      <div class="toolbar">
        ${sorts.length ? html`<label>Sort by <select name="sort">${sorts.map((sort) =>
          html`<option value="${sort.id}" ${sort.id === state.sort ? "selected" : ""}>${sort.label}</option>`)}</select></label>` : ""}
        <label class="toggle"><input type="checkbox" name="desc" ${state.order === "desc" ? "checked" : ""}> descending</label>
        ${state.show === "visualizations" ? "" : html`<label>Colours <select name="scale">
          <option value="unit" ${state.scale === "unit" ? "selected" : ""}>each unit to its own maximum</option>
          <option value="layer" ${state.scale === "layer" ? "selected" : ""}>one scale for the layer</option></select></label>`}
        <label>Show <select name="show">
          <option value="images" ${state.show === "images" ? "selected" : ""}>top images</option>
          <option value="visualizations" ${state.show === "visualizations" ? "selected" : ""}>feature visualisations</option></select></label>
      </div>
      <div class="scale-slot"></div>
      <div class="layer-bar-slot"></div>
    </section>
    <ul class="unit-grid" aria-label="Units"></ul>`;

  // Pages of units (with their top maps) are fetched as the grid first needs one of their units.
  const pages = new Map([[0, Promise.resolve({ ...first, maps: decodeMaps(first.top_maps) })]]);
  const pageOf = (index) => {
    const number = Math.floor(index / PAGE);
    if (!pages.has(number)) {
      pages.set(number, layerUnits(modelId, layer, unitsQuery(state, { offset: number * PAGE, limit: PAGE }), { signal })
        .then((page) => ({ ...page, maps: decodeMaps(page.top_maps) })));
      pages.get(number).catch(() => pages.delete(number)); // a failed page is fetched again when next needed
    }
    return pages.get(number).then((page) => [page, index - number * PAGE]);
  };
  // Cells ask for their visualisations four at a time, in the grid's order: one the server must render first
  // takes seconds, and asked for all at once they would all come late and together. The server renders the
  // four as one batch (app/studio/model_calls.py), and a browser's two other connections stay free.
  const rendering = taskQueue(RENDERS_AT_ONCE);
  const showRendering = () => {
    const { queued, finished } = rendering.counts();
    const count = root.querySelector(".rendering-count");
    if (count && queued) count.textContent = finished < queued ? `Rendered ${finished} of ${queued} so far…` : "";
  };
  const bind = async (cell, index) => {
    cell.dataset.index = index;
    cell.className = "unit-cell";
    cell.removeAttribute("data-unit");
    const [link, canvas, label] = [cell.firstChild, cell.firstChild.firstChild, cell.firstChild.lastChild];
    link.removeAttribute("href");
    label.textContent = "\u00a0"; // keeps the cell's height while its unit loads
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    const current = () => !signal.aborted && cell.dataset.index === String(index);
    let page, i;
    try {
      [page, i] = await pageOf(index);
    } catch {
      return; // the page failed to load (or the view was left); the cell stays empty
    }
    if (!current()) return;
    const unit = page.units[i];
    cell.dataset.unit = unit.unit;
    cell.classList.toggle("is-dead", unit.dead);
    link.href = pageUrl.unit(modelId, layer, unit.unit, atlasQuery(state));
    label.innerHTML = unitLabel(unit, state, sorts).text;
    if (state.show === "visualizations") {
      cell.classList.add("is-queued");  // a still tile while it waits its turn; it pulses once asked for
      const url = apiUrl.visualizationPng(modelId, layer, unit.unit, atlasQuery({ kind: state.kind }));
      const load = () => {
        cell.classList.replace("is-queued", "is-rendering");
        return loadImage(url);
      };
      // A stored one (`fovea visualize`, a first start's) comes at once; the others wait their turn, so that
      // those asked for together are rendered together.
      try {
        const asked = page.visualized?.includes(unit.unit) ? load() : rendering(load, current);
        showRendering();
        const image = await asked;
        if (!current() || !image) return;
        canvas.getContext("2d").drawImage(image, 0, 0, canvas.width, canvas.height);
        cell.classList.add("is-drawn");
      } catch {
        if (current()) cell.classList.add("is-missing");
      } finally {
        if (current()) cell.classList.remove("is-queued", "is-rendering");
        showRendering();
      }
      return;
    }
    if (unit.top_image === null) return;
    try {
      const image = await loadImage(apiUrl.datasetImage(page.dataset, unit.top_image, modelId));
      if (!current()) return;
      drawHeatmap(canvas, image, mapAt(page.maps, i), { low: 0, high: Math.max(layerMax ?? unit.max_max, 1e-6),
        opacity: GRID_OPACITY, gamma: GRID_GAMMA, outline: unit.quantile_995 > 0 ? unit.quantile_995 : null });
      cell.classList.add("is-drawn");
    } catch {
      if (current()) cell.classList.add("is-missing");
    }
  };
  const template = document.createElement("template");
  template.innerHTML = '<li class="unit-cell"><a><canvas width="112" height="112"></canvas><span class="unit-label">&nbsp;</span></a></li>';
  virtualGrid(root.querySelector(".unit-grid"), {
    total: first.units_total, create: () => template.content.firstChild.cloneNode(true), bind, signal,
  });

  if (state.show === "visualizations") {
    root.querySelector(".scale-slot").innerHTML = html`<p class="muted small">Each cell: the image optimised to
      make the unit fire (its feature visualisation), rendered by the server the first time it is asked for, four
      at a time in one batch (seconds to a minute each on a CPU; <code>${runnable(`fovea visualize ${modelId} --layers ${layer}${
      state.kind === CHANNEL ? "" : ` --kind ${state.kind}`}`)}</code> renders a whole layer ahead of time).
      <span class="rendering-note"></span> <span class="rendering-count" aria-live="polite"></span></p>`;
    noteBackgroundRendering(root.querySelector(".rendering-note"), modelId, signal);
  } else renderColorScale(root.querySelector(".scale-slot"), layerMax === null
    ? { colormap: "viridis", gamma: GRID_GAMMA, from: "0", to: "the unit's maximum",
      note: "Each cell is scaled to its own unit's maximum (the number under it): cells do not compare. "
        + "Outlined: where each unit passes its 99.5% quantile." }
    : { colormap: "viridis", gamma: GRID_GAMMA, from: "0", to: layerMax.toFixed(2),
      note: "One scale for every unit, up to the layer's highest activation; outlined: where each unit passes its "
        + "99.5% quantile." });
  mountLayerBar(root.querySelector(".layer-bar-slot"), { modelId, layer, total: first.units_total,
    order: indexedOrder(model.layers, atlases, first.dataset), layerQuery: { dataset: state.dataset },
    unitQuery: () => atlasQuery(state), signal });
  onDatasetPicked(root, signal, (dataset) => navigate(pageUrl.layer(modelId, layer, layerQuery({ ...state, dataset }))));

  const resort = () => navigate(pageUrl.layer(modelId, layer, layerQuery(state)), { replace: true, rerender: true });
  root.querySelector("select[name=sort]")?.addEventListener("change", (event) => {
    state.sort = event.target.value;
    // Each sort in its natural direction (the server's `order`: the strongest units first for most); the
    // checkbox turns it round.
    state.order = sorts.find((sort) => sort.id === state.sort)?.order ?? LAYER_DEFAULTS.order;
    resort();
  }, { signal });
  root.querySelector("input[name=desc]").addEventListener("change", (event) => {
    state.order = event.target.checked ? "desc" : "asc";
    resort();
  }, { signal });
  root.querySelector("select[name=scale]")?.addEventListener("change", (event) => {
    state.scale = event.target.value;
    resort();
  }, { signal });
  root.querySelector("select[name=show]").addEventListener("change", (event) => {
    state.show = event.target.value;
    resort();
  }, { signal });
  return { title: `${layer} · ${model.name}`, crumbs };
}

/** Where the first start's background rendering of this model's default layers is, while it runs (asked
 *  afresh: the data layer's copy of the atlases answer may be older than the rendering). */
async function noteBackgroundRendering(note, modelId, signal) {
  try {
    const { rendering } = await getJson(apiUrl.atlases(modelId), { signal });
    if (rendering && (rendering.state === "rendering" || rendering.state === "waiting")) {
      note.textContent = rendering.state === "waiting" ? "The server renders this model's default layers once its atlas is built."
        : `The server is rendering this model's default layers: ${rendering.layer}, ${rendering.done} of ${rendering.total} units.`;
    }
  } catch {
    // no note: the grid asks for each cell's image anyway
  }
}

function unitLabel(unit, state, sorts) {
  const sort = sorts.find((s) => s.id === state.sort);
  // The cell is narrow: the value, named in full by its tooltip and by the sort menu above the grid. "max"
  // goes where a long unit number and value leave no room for it ("332 12.79"), and on a phone, where four
  // cells a row leave room for the number alone.
  const max = unit.max_max.toFixed(2);
  const stat = state.sort === "unit" || state.sort === "max_max" || !sort
    ? html`<span title="max activation">${`${unit.unit}${max}`.length <= 7 ? html`<span class="stat-word">max </span>`
      : ""}${max}</span>`
    : html`<span title="${sort.label}">${formatStatistic(unit[state.sort], sort.format, 2)}</span>`;
  // On the image, top left: the cell's height stays what the virtual grid lays out.
  const label = unit.label ? html`<span class="chip small" title="${chipTitle(unit.label)}">${unit.label.name}</span>` : "";
  return html`<b>${unit.unit}</b> ${unit.dead ? html`<span class="badge badge-error">dead</span>` : stat}${label}`;
}
