// Unit page: the unit's top images with heatmaps drawn here from raw maps (colormap, opacity, region mask
// and outline at its 99.5% quantile, crop around the peak) under one colour scale, its statistics (first,
// so a phone shows them before the gallery), histograms and most correlated units, and the way to the
// neighbouring layers and any unit. View options live in the URL; the left and right arrow keys step
// through units.

import { getJson } from "../api.js";
import { html } from "../dom.js";
import { renderColorScale } from "../color-scale.js";
import { COLORMAPS } from "../colormaps.js";
import { mountCopyLink } from "../copy-link.js";
import { indexedOrder } from "../layer-nav.js";
import { decodeMaps, drawHeatmap, loadImage, mapAt } from "../maps.js";
import { navigate } from "../router.js";
import { apiUrl, pageUrl } from "../urls.js";
import { atlasProblem } from "./atlas-problem.js";
import { barChart, histogramChart } from "./charts.js";
import { datasetPicker, onDatasetPicked } from "./dataset-picker.js";
import { mountLayerBar } from "./layer-bar.js";
import { mountUnitOnImage } from "./unit-on-image.js";

// Heatmaps that stay visible on any image: strong at the peak, clear where the unit is quiet (opacity
// follows the value), and the region above the unit's 99.5% quantile outlined. A link that names an
// opacity keeps it; `outline=0` turns the outline off.
const DEFAULT_OPACITY = 0.75;
const HEAT_GAMMA = 1;

export function unitViewState(query) {
  const opacity = Number(query.opacity);
  return {
    colormap: COLORMAPS.includes(query.cmap) ? query.cmap : "viridis",
    opacity: Number.isFinite(opacity) && query.opacity !== undefined ? Math.min(Math.max(opacity, 0), 1) : DEFAULT_OPACITY,
    mask: query.mask === "1",
    crop: query.crop === "1",
    outline: query.outline !== "0",
    dataset: query.dataset || null, // the atlas shown; null: the model's default, named once it is known
    image: query.image || null, // the image page the user came from: the unit is shown on it too
  };
}

export function stateQuery(state) {
  return { cmap: state.colormap === "viridis" ? "" : state.colormap,
    opacity: state.opacity === DEFAULT_OPACITY ? "" : state.opacity, mask: state.mask, crop: state.crop,
    outline: state.outline ? "" : "0", dataset: state.dataset ?? "", image: state.image ?? "" };
}

export async function mountUnit(root, { params, query, signal }) {
  const { model: modelId, layer, unit } = params;
  const state = unitViewState(query);
  root.innerHTML = html`<p class="muted">Loading unit ${unit}…</p>`;
  const [model, atlases] = await Promise.all([getJson(apiUrl.model(modelId), { signal }),
    getJson(apiUrl.atlases(modelId), { signal }).then((body) => body.atlases, () => [])]);
  const atlasQuery = { dataset: state.dataset };
  const crumbs = [{ label: model.name, href: pageUrl.model(modelId, atlasQuery) },
    { label: layer, href: pageUrl.layer(modelId, layer, atlasQuery) },
    { label: String(unit), href: pageUrl.unit(modelId, layer, unit, atlasQuery) }];
  let detail;
  let maps;
  try {
    [detail, maps] = await Promise.all([getJson(apiUrl.unit(modelId, layer, unit, atlasQuery), { signal }),
      getJson(apiUrl.unitMaps(modelId, layer, unit, atlasQuery), { signal })]);
  } catch (error) {
    if (error.status !== 409) throw error;
    atlasProblem(root, error, { title: `${layer}:${unit}`, signal });
    return { title: `${layer}:${unit} · ${model.name}`, crumbs };
  }
  const decoded = decodeMaps(maps);
  if (!state.dataset) { // a link that named no dataset: name the one shown, so a copied link keeps showing it
    state.dataset = detail.dataset;
    navigate(pageUrl.unit(modelId, layer, unit, stateQuery(state)), { replace: true });
  }
  const previous = unit > 0 ? pageUrl.unit(modelId, layer, unit - 1, stateQuery(state)) : null;
  const next = unit < detail.units_total - 1 ? pageUrl.unit(modelId, layer, unit + 1, stateQuery(state)) : null;
  const stats = detail.stats;

  root.innerHTML = html`
    <section class="page-head unit-head">
      <div class="title-row">
        <h1><code>${layer}:${unit}</code></h1>
        ${detail.dead ? html`<span class="badge badge-error">dead</span>` : ""}
        <nav class="stepper" aria-label="Units">
          ${previous ? html`<a class="button" href="${previous}" data-unit="${unit - 1}" rel="prev" title="Previous unit (←)">← ${unit - 1}</a>` : ""}
          ${next ? html`<a class="button" href="${next}" data-unit="${unit + 1}" rel="next" title="Next unit (→)">${unit + 1} →</a>` : ""}
          <button type="button" class="button copy-link">Copy link</button>
        </nav>
      </div>
      <p class="muted">unit ${unit} of ${detail.units_total} · ${model.name} · ${datasetPicker(atlases, detail.dataset)}</p>
      ${saturationNote(detail, modelId, state)}
      <div class="toolbar">
        <label>Colormap <select name="colormap">${COLORMAPS.map((name) =>
          html`<option value="${name}" ${name === state.colormap ? "selected" : ""}>${name}</option>`)}</select></label>
        <label>Opacity <input type="range" name="opacity" min="0" max="1" step="0.05" value="${state.opacity}"></label>
        <label class="toggle"><input type="checkbox" name="mask" ${state.mask ? "checked" : ""}> region mask (99.5% quantile)</label>
        <label class="toggle"><input type="checkbox" name="crop" ${state.crop ? "checked" : ""}> crop to receptive field</label>
        <label class="toggle"><input type="checkbox" name="outline" ${state.outline ? "checked" : ""}> outline the region</label>
      </div>
      <div class="scale-slot"></div>
      <div class="layer-bar-slot"></div>
    </section>
    <div class="unit-layout">
      <section class="panel unit-summary"><h2>Statistics</h2>
        <dl class="stats">
          <div><dt>max activation</dt><dd>${stats.max_max.toFixed(3)}</dd></div>
          <div><dt>image max: mean ± std</dt><dd>${stats.max_mean.toFixed(3)} ± ${stats.max_std.toFixed(3)}</dd></div>
          <div><dt>image mean: mean ± std</dt><dd>${stats.mean_mean.toFixed(3)} ± ${stats.mean_std.toFixed(3)}</dd></div>
          <div><dt>active on</dt><dd>${(stats.fraction_active * 100).toFixed(1)}% of images</dd></div>
          <div><dt>99.5% quantile</dt><dd>${stats.quantile_995.toFixed(3)}</dd></div>
        </dl>
      </section>
      <section class="gallery-section">
        <h2>Top ${detail.top.length} images</h2>
        <p class="muted gallery-note">Each caption gives the unit's peak activation, then the class of the image (its
          dataset folder) and the model's prediction when it differs: what the image is, not what the unit detects.</p>
        <ol class="gallery">${detail.top.map((item) => html`
          <li class="gallery-item" data-rank="${item.rank}">
            <a href="${pageUrl.image(`${detail.dataset}:${item.image}`, { model: modelId, layer })}" title="Study this image"
              aria-label="Rank ${item.rank + 1}: ${item.value.toFixed(2)} on image ${detail.dataset}:${item.image}${item.label ? `, class ${item.label}` : ""}">
              <canvas width="160" height="160"></canvas></a>
            <span class="caption"><b>${item.value.toFixed(2)}</b>${item.label ? html` <span class="muted">image:</span> ${item.label}` : ""}${item.prediction && item.prediction !== item.label
              ? html` <span class="muted">→ ${item.prediction}</span>` : ""}</span>
          </li>`)}</ol>
      </section>
      <aside class="unit-side">
        <section class="panel"><h2>Activation histogram</h2>${histogramChart(detail.histogram)}</section>
        <section class="panel"><h2>Image classes among the top images</h2>
          <p class="muted panel-note">The dataset's labels of these images, not a label of the unit.</p>${barChart(detail.class_histogram)}</section>
        <section class="panel"><h2>Most correlated units</h2>
          <ol class="similar">${detail.similar.map((s) => html`<li>
            <a href="${pageUrl.unit(modelId, layer, s.unit, stateQuery(state))}" data-unit="${s.unit}"><code>${layer}:${s.unit}</code></a>
            <span class="muted">r = ${s.correlation.toFixed(2)}</span></li>`)}</ol>
        </section>
      </aside>
    </div>`;

  if (state.image) {  // opened from an image page: the unit on that image comes first
    mountUnitOnImage(root.querySelector(".gallery-section"), { modelId, layer, unit, imageId: state.image,
      dataset: detail.dataset, opacity: state.opacity, signal });
  }
  const high = Math.max(decoded.range[1], 1e-6);
  const draw = () => detail.top.forEach((item, index) => {
    const canvas = root.querySelector(`.gallery-item[data-rank="${item.rank}"] canvas`);
    loadImage(item.url).then((image) => {
      if (signal.aborted) return;
      drawHeatmap(canvas, image, mapAt(decoded, index), {
        low: 0, high, colormap: state.colormap, opacity: state.opacity, gamma: HEAT_GAMMA, mask: state.mask,
        threshold: stats.quantile_995, outline: state.outline ? stats.quantile_995 : null, region: state.crop ? item.crop : null,
      });
    }).catch(() => canvas.classList.add("is-missing"));
  });
  const showScale = () => renderColorScale(root.querySelector(".scale-slot"), {
    colormap: state.colormap, from: "0", to: high.toFixed(2), mark: stats.quantile_995 / high,
    markLabel: `99.5% quantile: ${stats.quantile_995.toFixed(2)}`,
    note: `One scale for all ${detail.top.length} images, strongest colour at the highest value shown; `
      + `${state.outline ? "the mark and the outlines" : "the mark"}: the unit's 99.5% quantile, ${stats.quantile_995.toFixed(2)}.`,
  });
  draw();
  showScale();

  const update = () => {
    navigate(pageUrl.unit(modelId, layer, unit, stateQuery(state)), { replace: true });
    // Links to other units carry the view options along.
    root.querySelectorAll("a[data-unit]").forEach((link) => {
      link.href = pageUrl.unit(modelId, layer, Number(link.dataset.unit), stateQuery(state));
    });
    draw();
    showScale();
  };
  root.querySelector("select[name=colormap]").addEventListener("change", (e) => { state.colormap = e.target.value; update(); }, { signal });
  root.querySelector("input[name=opacity]").addEventListener("input", (e) => { state.opacity = Number(e.target.value); update(); }, { signal });
  root.querySelector("input[name=mask]").addEventListener("change", (e) => { state.mask = e.target.checked; update(); }, { signal });
  root.querySelector("input[name=crop]").addEventListener("change", (e) => { state.crop = e.target.checked; update(); }, { signal });
  root.querySelector("input[name=outline]").addEventListener("change", (e) => { state.outline = e.target.checked; update(); }, { signal });
  mountCopyLink(root.querySelector(".copy-link"), { signal });
  onDatasetPicked(root, signal, (dataset) => navigate(pageUrl.unit(modelId, layer, unit, stateQuery({ ...state, dataset }))));
  mountLayerBar(root.querySelector(".layer-bar-slot"), { modelId, layer, total: detail.units_total,
    order: indexedOrder(model.layers, atlases, detail.dataset), layerQuery: { dataset: state.dataset },
    unitQuery: () => stateQuery(state), signal });
  document.addEventListener("keydown", (event) => {
    // Arrow keys belong to the control that has focus, except a checkbox, which has no use for them.
    if (event.target.closest("input:not([type=checkbox]), select, textarea") || event.metaKey || event.ctrlKey || event.altKey) return;
    if (event.key === "ArrowLeft" && previous) navigate(root.querySelector('.stepper a[rel="prev"]').getAttribute("href"));
    if (event.key === "ArrowRight" && next) navigate(root.querySelector('.stepper a[rel="next"]').getAttribute("href"));
  }, { signal });
  return { title: `${layer}:${unit} · ${model.name}`, crumbs };
}

/** A saturated unit: many images tie at its cap, so their order and peaks need a word, and the values
 * before the clamp are one link away. */
function saturationNote(detail, modelId, state) {
  const saturation = detail.saturation;
  if (!saturation) return "";
  const before = saturation.before_clamp;
  return html`<p class="note saturation-note" role="note"><b>Saturated:</b> ${saturation.images_at_max} images
    reach exactly ${saturation.value.toFixed(3)}, the cap of a clamp such as ReLU6, so the top images are ordered
    by their ${saturation.tie_break} among those tied, and each peak marks the centre of the capped region.
    ${before ? html`For the values before the clamp, see <a href="${pageUrl.unit(modelId, before, detail.unit, stateQuery(state))}"><code>${before}:${detail.unit}</code></a>.` : ""}</p>`;
}
