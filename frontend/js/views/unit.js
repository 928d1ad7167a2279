// Unit page: the unit's top images with heatmaps drawn here from raw maps (colormap, opacity, region mask
// and outline at its 99.5% quantile, crop around the peak) under one colour scale, its statistics (first,
// so a phone shows them before the gallery), histograms and most correlated units, and the way to the
// neighbouring layers and any unit. View options live in the URL (unit-view.js); the left and right arrow
// keys step through units, each step a history entry drawn in place: the page's skeleton (toolbar, colour
// scale, layer bar) stays, its content is the new unit's.

import { html } from "../dom.js";
import { renderColorScale } from "../color-scale.js";
import { COLORMAPS } from "../colormaps.js";
import { mountCopyLink } from "../copy-link.js";
import { forgetAtlases, modelAtlases, modelCard, unitDetail, unitMaps } from "../data.js";
import { indexedOrder } from "../layer-nav.js";
import { decodeMaps, drawHeatmap, drawMaskTint, loadImage, mapAt } from "../maps.js";
import { navigate } from "../router.js";
import { neighbourUnits, sameUnitPage, unitQuery, unitViewState, visualizationCaption } from "../unit-view.js";
import { describeProgress, getJsonFollowed } from "../progress.js";
import { CHANNEL, apiUrl, atlasQuery, pageUrl } from "../urls.js";
import { formatStatistic, unitStatistics } from "../vocabularies.js";
import { atlasProblem } from "./atlas-problem.js";
import { barChart, histogramChart } from "./charts.js";
import { datasetPicker, onDatasetPicked } from "./dataset-picker.js";
import { mountLayerBar } from "./layer-bar.js";
import { featurePanels, kindName } from "./features.js";
import { labelLine, labelsPanel, maskableLabel } from "./unit-labels.js";
import { mountNotes } from "./unit-notes.js";
import { mountUnitOnImage } from "./unit-on-image.js";

const HEAT_GAMMA = 1;

/** Mount the page; the answer's `update(route, { signal })` draws another unit of the same layer in place
 *  (null: it cannot, mount the page again). */
export async function mountUnit(root, { params, query, signal }) {
  const { model: modelId, layer } = params;
  const state = unitViewState(query);
  root.innerHTML = html`<p class="muted">Loading unit ${params.unit}…</p>`;
  const [model, atlases, statistics] = await Promise.all([modelCard(modelId, { signal }),
    modelAtlases(modelId, { signal }), unitStatistics({ signal })]);
  const meta = (unit) => ({ title: `${unitName(layer, state.kind, unit)} · ${model.name}`, crumbs: [
    { label: model.name, href: pageUrl.model(modelId, { dataset: state.dataset }) },
    { label: state.kind === CHANNEL ? layer : `${layer} ${kindName(state.kind)}`, href: pageUrl.layer(modelId, layer, atlasQuery(state)) },
    { label: String(unit), href: pageUrl.unit(modelId, layer, unit, atlasQuery(state)) }] });
  const load = async (unit, loadSignal) => {
    const [detail, maps] = await Promise.all([unitDetail(modelId, layer, unit, atlasQuery(state), { signal: loadSignal }),
      unitMaps(modelId, layer, unit, atlasQuery(state), { signal: loadSignal })]);
    return { unit, detail, decoded: decodeMaps(maps), signal: loadSignal };
  };
  let shown;  // the unit on the page: { unit, detail, decoded, signal (its step's) }
  try {
    shown = await load(params.unit, signal);
  } catch (error) {
    if (error.status !== 409) throw error;
    forgetAtlases(modelId);  // the atlas may be on its way: the next look asks again
    atlasProblem(root, error, { title: `${layer}:${params.unit}`, signal });
    return meta(params.unit);
  }
  if (!state.dataset) { // a link that named no dataset: name the one shown, so a copied link keeps showing it
    state.dataset = shown.detail.dataset;
    navigate(pageUrl.unit(modelId, layer, params.unit, unitQuery(state)), { replace: true });
  }

  root.innerHTML = html`
    <section class="page-head unit-head">
      <div class="title-row">
        <h1><code></code></h1>
        <nav class="stepper" aria-label="Units">
          <button type="button" class="button copy-link">Copy link</button>
        </nav>
      </div>
      <p class="muted">unit ${shown.unit} of ${shown.detail.units_total} · ${model.name} · ${datasetPicker(atlases, shown.detail.dataset)}</p>
      <div class="toolbar">
        <label>Colormap <select name="colormap">${COLORMAPS.map((name) =>
          html`<option value="${name}" ${name === state.colormap ? "selected" : ""}>${name}</option>`)}</select></label>
        <label>Opacity <input type="range" name="opacity" min="0" max="1" step="0.05" value="${state.opacity}"></label>
        <label class="toggle"><input type="checkbox" name="mask" ${state.mask ? "checked" : ""}> region mask (99.5% quantile)</label>
        <label class="toggle"><input type="checkbox" name="crop" ${state.crop ? "checked" : ""}> crop to receptive field</label>
        <label class="toggle"><input type="checkbox" name="outline" ${state.outline ? "checked" : ""}> outline the region</label>
        <label class="toggle concept-toggle" hidden><input type="checkbox" name="concept" ${state.concept ? "checked" : ""}>
          <span>the label's pixels</span></label>
      </div>
      <div class="scale-slot"></div>
      <div class="layer-bar-slot"></div>
    </section>
    <div class="unit-layout"></div>`;
  const head = root.querySelector(".unit-head");
  // The line that counts the unit: its first words change with a step, the dataset picker in it stays (one
  // text node rewritten, so the line is laid out as one run, as when the page is drawn afresh).
  const countLine = head.querySelector(":scope > p.muted");
  const controls = {
    colormap: root.querySelector("select[name=colormap]"), opacity: root.querySelector("input[name=opacity]"),
    mask: root.querySelector("input[name=mask]"), crop: root.querySelector("input[name=crop]"),
    outline: root.querySelector("input[name=outline]"), concept: root.querySelector("input[name=concept]"),
  };

  // The view options changed: into the address bar, and carried along by the links to other units.
  const relink = () => {
    navigate(pageUrl.unit(modelId, layer, shown.unit, unitQuery(state)), { replace: true });
    root.querySelectorAll("a[data-unit]").forEach((link) => {
      link.href = pageUrl.unit(modelId, layer, Number(link.dataset.unit), unitQuery(state));
    });
  };
  // The unit's own parts of the page: its title, badge, steps, count, saturation note and content.
  const fill = () => {
    const { unit, detail } = shown;
    const { previous, next } = neighbourUnits(unit, detail.units_total);
    const titleRow = head.querySelector(".title-row");
    titleRow.querySelector("h1 code").textContent = unitName(layer, state.kind, unit);
    // A receptive field as large as the image (a late layer's) leaves nothing to crop.
    const whole = detail.top.every((item) => !item.crop || (item.crop.w >= 1 && item.crop.h >= 1 && item.crop.x <= 0 && item.crop.y <= 0));
    controls.crop.disabled = whole;
    controls.crop.closest("label").title = whole ? "At this layer each top image's receptive field is the whole image: nothing to crop" : "";
    titleRow.querySelectorAll(".badge").forEach((badge) => badge.remove());
    if (detail.dead) titleRow.querySelector("h1").insertAdjacentHTML("afterend", html`<span class="badge badge-error">dead</span>`);
    if (detail.feature) {
      titleRow.querySelector("h1").insertAdjacentHTML("afterend", html`<a class="badge badge-feature"
        href="${detail.feature.dictionary.page}" title="A feature of the dictionary ${detail.feature.dictionary.kind} of ${layer}">feature of ${detail.feature.dictionary.kind}</a>`);
    }
    const stepper = head.querySelector(".stepper");
    stepper.querySelectorAll("a").forEach((link) => link.remove());
    stepper.insertAdjacentHTML("afterbegin", html`
          ${previous !== null ? html`<a class="button" href="${pageUrl.unit(modelId, layer, previous, unitQuery(state))}" data-unit="${previous}" rel="prev" title="Previous unit (←)">← ${previous}</a>` : ""}
          ${next !== null ? html`<a class="button" href="${pageUrl.unit(modelId, layer, next, unitQuery(state))}" data-unit="${next}" rel="next" title="Next unit (→)">${next} →</a>` : ""}`);
    countLine.firstChild.data = countLine.firstChild.data.replace(/^unit \d+ of \d+/, `unit ${unit} of ${detail.units_total}`);
    head.querySelector(".saturation-note")?.remove();
    head.querySelector(".unit-labels")?.remove();
    countLine.insertAdjacentHTML("afterend", saturationNote(detail, modelId, state));
    countLine.insertAdjacentHTML("afterend", labelLine(detail, modelId));
    const label = maskableLabel(detail);
    const toggle = head.querySelector(".concept-toggle");
    toggle.hidden = !label;
    if (label) toggle.querySelector("span").textContent = `the pixels of ${label.id}`;
    const images = atlases.find((a) => a.dataset === detail.dataset)?.images;
    root.querySelector(".unit-layout").innerHTML = content(detail, statistics, modelId, layer, state, images);
    mountVisualization(root.querySelector(".visualization"), { state, onChange: relink, modelId, layer, unit,
      signal: shown.signal });
    mountNotes(root.querySelector(".notes"), { modelId, layer, unit, kind: state.kind, signal: shown.signal });
    if (state.image) {  // opened from an image page: the unit on that image comes first
      mountUnitOnImage(root.querySelector(".gallery-section"), { modelId, layer, unit, imageId: state.image,
        dataset: detail.dataset, kind: state.kind, opacity: state.opacity, signal: shown.signal });
    }
  };
  const draw = () => {
    const { detail, decoded, signal: drawn } = shown;
    const stats = detail.stats;
    const high = Math.max(decoded.range[1], 1e-6);
    const label = state.concept ? maskableLabel(detail) : null;
    detail.top.forEach((item, index) => {
      const canvas = root.querySelector(`.gallery-item[data-rank="${item.rank}"] canvas`);
      const region = state.crop ? item.crop : null;
      // A mask that fails to load (labels gone from disk) leaves the image drawn without it.
      const mask = label ? loadImage(apiUrl.conceptMask(modelId, label.id, item.image, { dataset: detail.dataset }))
        .catch(() => null) : null;
      Promise.all([loadImage(item.url), mask]).then(([image, maskImage]) => {
        if (drawn.aborted || shown.detail !== detail) return;
        drawHeatmap(canvas, image, mapAt(decoded, index), {
          low: 0, high, colormap: state.colormap, opacity: state.opacity, gamma: HEAT_GAMMA, mask: state.mask,
          threshold: stats.quantile_995, outline: state.outline ? stats.quantile_995 : null, region,
        });
        if (maskImage) drawMaskTint(canvas, maskImage, { region });
      }).catch(() => canvas.classList.add("is-missing"));
    });
    renderColorScale(root.querySelector(".scale-slot"), {
      // The maps are stored as float16: their top is the unit's maximum rounded (8.625 for 8.622); say the exact one.
      colormap: state.colormap, gamma: HEAT_GAMMA, from: "0", to: scaleTop(high, stats.max_max).toFixed(2), mark: stats.quantile_995 / high,
      markLabel: `99.5% quantile: ${stats.quantile_995.toFixed(2)}`,
      note: `One scale for all ${detail.top.length} images, strongest colour at the highest value shown; `
        + `${state.outline ? "the mark and the outlines" : "the mark"}: the unit's 99.5% quantile, ${stats.quantile_995.toFixed(2)}.`,
    });
  };
  fill();
  draw();

  const update = () => {
    relink();
    draw();
  };
  controls.colormap.addEventListener("change", (e) => { state.colormap = e.target.value; update(); }, { signal });
  controls.opacity.addEventListener("input", (e) => { state.opacity = Number(e.target.value); update(); }, { signal });
  controls.mask.addEventListener("change", (e) => { state.mask = e.target.checked; update(); }, { signal });
  controls.crop.addEventListener("change", (e) => { state.crop = e.target.checked; update(); }, { signal });
  controls.outline.addEventListener("change", (e) => { state.outline = e.target.checked; update(); }, { signal });
  controls.concept.addEventListener("change", (e) => { state.concept = e.target.checked; update(); }, { signal });
  mountCopyLink(root.querySelector(".copy-link"), { signal });
  onDatasetPicked(root, signal, (dataset) => navigate(pageUrl.unit(modelId, layer, shown.unit, unitQuery({ ...state, dataset }))));
  mountLayerBar(root.querySelector(".layer-bar-slot"), { modelId, layer, total: shown.detail.units_total,
    order: indexedOrder(model.layers, atlases, shown.detail.dataset), layerQuery: { dataset: state.dataset },
    unitQuery: () => unitQuery(state), signal });
  document.addEventListener("keydown", (event) => {
    // Arrow keys belong to the control that has focus, except a checkbox, which has no use for them.
    if (event.target.closest("input:not([type=checkbox]), select, textarea") || event.metaKey || event.ctrlKey || event.altKey) return;
    const step = { ArrowLeft: "prev", ArrowRight: "next" }[event.key];
    const link = step && root.querySelector(`.stepper a[rel="${step}"]`);
    if (link) navigate(link.getAttribute("href"));
  }, { signal });

  // Another unit of this layer (an arrow key, a correlated unit, back and forward): its data, then the page.
  const step = async (route, { signal: stepSignal }) => {
    if (!sameUnitPage({ model: modelId, layer, kind: state.kind, dataset: state.dataset, image: state.image }, route)) {
      return null;
    }
    let next;
    try {
      next = await load(route.params.unit, stepSignal);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      return null;  // an error page, or the atlas gone: the page is mounted again and says so
    }
    Object.assign(state, unitViewState(route.query));
    controls.colormap.value = state.colormap;
    controls.opacity.value = String(state.opacity);
    for (const name of ["mask", "crop", "outline", "concept"]) controls[name].checked = state[name];
    shown = next;
    fill();
    draw();
    return { ...meta(shown.unit), update: step };
  };
  return { ...meta(shown.unit), update: step };
}

/** How a unit is written: `block4:3`, or `block4 sae-384:3` for a dictionary's feature. */
export const unitName = (layer, kind, unit) => (kind === CHANNEL ? `${layer}:${unit}` : `${layer} ${kind}:${unit}`);

/** The unit's statistics, gallery and side panels. */
function content(detail, statistics, modelId, layer, state, images) {
  const stats = detail.stats;
  // Top images at 0: fewer images activate the unit than the gallery holds (a sparse feature, a small dataset).
  const inactive = detail.top.filter((item) => item.value === 0).length;
  return html`
      ${statistics.length ? html`<section class="panel unit-summary"><h2>Statistics</h2>
        <dl class="stats">${statistics.map((s) => html`
          <div title="${s.description}"><dt>${s.label}</dt><dd>${formatStatistic(stats[s.id], s.format)}</dd></div>`)}
        </dl>
      </section>` : ""}
      <section class="gallery-section">
        <h2>Top ${detail.top.length} images</h2>
        <p class="muted gallery-note">Each caption gives the unit's peak activation, then the class of the image (its
          dataset folder) and the model's prediction when it differs: what the image is, not what the unit detects.${
          inactive ? html` <b>${inactive} of them do not activate it at all</b> (peak 0): no other image of the
          dataset does either.` : ""}</p>
        <ol class="gallery">${detail.top.map((item) => html`
          <li class="gallery-item${item.value === 0 ? " is-inactive" : ""}" data-rank="${item.rank}">
            <a href="${pageUrl.image(`${detail.dataset}:${item.image}`, { model: modelId, layer })}" title="Study this image"
              aria-label="Rank ${item.rank + 1}: ${item.value.toFixed(2)} on image ${detail.dataset}:${item.image}${item.label ? `, class ${item.label}` : ""}">
              <canvas width="160" height="160"></canvas></a>
            <span class="caption"><b>${item.value.toFixed(2)}</b>${item.label ? html` <span class="muted">image:</span> ${item.label}` : ""}${item.prediction && item.prediction !== item.label
              ? html` <span class="muted">→ ${item.prediction}</span>` : ""}</span>
          </li>`)}</ol>
      </section>
      <aside class="unit-side">
        ${labelsPanel(detail.labels, modelId)}
        ${featurePanels(detail.feature, { modelId, layer, dataset: detail.dataset, unitQuery: () => unitQuery(state) })}
        <section class="panel visualization"><h2>What drives it most</h2>
          <p class="muted panel-note">An image optimised to make this unit fire (feature visualisation): what it
            responds to, beyond the images the dataset happens to hold.</p>
          <div class="segmented" role="group" aria-label="Feature visualisation">${DRIVE_CHOICES.map(([value, label, title]) => html`
            <button type="button" class="button" data-drive="${value}" title="${title}"
              aria-pressed="${String((state.drive ?? "") === value)}">${label}</button>`)}</div>
          <div class="visualization-body"></div>
        </section>
        <section class="panel"><h2>Activation histogram</h2>${histogramChart(detail.histogram)}</section>
        <section class="panel"><h2>Image classes among the top images</h2>
          <p class="muted panel-note">The dataset's labels of these images, not a label of the unit. Its class
            selectivity (AUC) ranks every image of a class instead: a class can fill the top images and still score low
            when most of its images leave the unit quiet.</p>${barChart(detail.class_histogram)}</section>
        <section class="panel notes"><h2>Notes</h2><div class="notes-body"></div></section>
        <section class="panel"><h2>Most correlated units</h2>
          ${images ? html`<p class="muted panel-note">Pearson's r of the units' mean activations over the
            ${images.toLocaleString("en")} images of the dataset${images < 100 ? ": few, so take these loosely" : ""}.</p>`
            : ""}
          <ol class="similar">${detail.similar.map((s) => html`<li>
            <a href="${pageUrl.unit(modelId, layer, s.unit, unitQuery(state))}" data-unit="${s.unit}"><code>${unitName(layer, state.kind, s.unit)}</code></a>
            <span class="muted">r = ${s.correlation.toFixed(2)}</span></li>`)}</ol>
        </section>
      </aside>`;
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
    ${before ? html`For the values before the clamp, see <a href="${pageUrl.unit(modelId, before, detail.unit, unitQuery(state))}"><code>${before}:${detail.unit}</code></a>.` : ""}</p>`;
}

// The visualisation panel's views: the image that drives the unit most, its facets, its negative image.
const DRIVE_CHOICES = [
  ["", "Most", "The image that drives the unit most"],
  ["facets", "Facets", "Its top images clustered, one image per cluster, started from the cluster's mean image"],
  ["negative", "Negative", "The image that drives the unit lowest"],
];
const FACETS = 3;

/** The visualisation panel: its view buttons (kept in the URL, `fv`), and the view asked, rendered by the
 *  server on the first ask (a few seconds on a CPU; the caption follows its steps), then kept. */
function mountVisualization(panel, { modelId, layer, unit, state, onChange, signal }) {
  if (!panel) return;
  let controller = null;
  const show = () => {
    controller?.abort();
    controller = new AbortController();
    signal.addEventListener("abort", () => controller.abort(), { once: true });
    for (const button of panel.querySelectorAll("[data-drive]")) {
      button.setAttribute("aria-pressed", String(button.dataset.drive === (state.drive ?? "")));
    }
    const body = panel.querySelector(".visualization-body");
    const view = state.drive === "facets" ? showFacets : showImage;
    view(body, { modelId, layer, unit, kind: state.kind, negative: state.drive === "negative", signal: controller.signal });
  };
  panel.querySelector(".segmented").addEventListener("click", (event) => {
    const button = event.target.closest("[data-drive]");
    if (!button || (state.drive ?? "") === button.dataset.drive) return;
    state.drive = button.dataset.drive || null;
    onChange();
    show();
  }, { signal });
  show();
}

async function showImage(body, { modelId, layer, unit, kind, negative, signal }) {
  body.innerHTML = html`<figure><div class="visualization-image"></div>
    <figcaption class="muted small">rendering…</figcaption></figure>`;
  const caption = body.querySelector("figcaption");
  try {
    const query = { ...atlasQuery({ kind }), ...(negative ? { negative: true } : {}) };
    const found = await getJsonFollowed(apiUrl.visualization(modelId, layer, unit, query), {
      signal, onProgress: (progress) => { caption.textContent = describeProgress(progress) || "rendering…"; } });
    const image = new Image();
    image.alt = `${negative ? "Negative feature" : "Feature"} visualisation of ${unitName(layer, kind, unit)}`;
    image.width = image.height = 224;
    image.src = found.png;
    body.querySelector(".visualization-image").replaceChildren(image);
    caption.textContent = visualizationCaption(found, negative);
  } catch (error) {
    if (error.name !== "AbortError") caption.textContent = `no visualisation: ${error.message}`;
  }
}

async function showFacets(body, { modelId, layer, unit, kind, signal }) {
  body.innerHTML = html`<p class="muted small">clustering the top images…</p>`;
  const note = body.querySelector("p");
  try {
    const found = await getJsonFollowed(apiUrl.visualizationFacets(modelId, layer, unit, { ...atlasQuery({ kind }), facets: FACETS }), {
      signal, onProgress: (progress) => { note.textContent = describeProgress(progress) || "rendering…"; } });
    body.innerHTML = html`<ol class="facets">${found.facets.map((facet) => html`
      <li class="facet">
        <img src="${facet.png}" width="96" height="96" alt="Facet ${facet.index + 1} of ${unitName(layer, kind, unit)}">
        <div class="facet-text"><b>Facet ${facet.index + 1}</b>
          <span class="muted small">${facet.members.length} top image${facet.members.length === 1 ? "" : "s"} ·
            reaches ${facet.activation.toFixed(2)}</span>
          <span class="facet-members">${facet.members.slice(0, 4).map((member) => html`
            <a href="${pageUrl.image(member.image, { model: modelId, layer })}" title="Rank ${member.rank + 1}: ${member.value.toFixed(2)}">
              <img src="${apiUrl.imageFile(member.image, modelId)}" width="28" height="28" alt="rank ${member.rank + 1}"></a>`)}</span>
        </div>
      </li>`)}</ol>
      <p class="muted small">The ${found.asked} facets asked of the top images of <code>${found.dataset}</code>, clustered
        by the layer's activations on them; each image starts from its facet's mean image.</p>`;
  } catch (error) {
    if (error.name !== "AbortError") note.textContent = `no facets: ${error.message}`;
  }
}

/** The colour scale's top: the unit's exact maximum where the float16 maps' top is it rounded. */
const scaleTop = (high, max) => (Math.abs(high - max) <= high / 1024 ? max : high);
