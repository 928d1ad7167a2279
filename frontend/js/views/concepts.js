// A model's detectors page (/m/{model}/concepts): NetDissect's summary of an atlas with concept labels, per
// layer the units labelled with a concept of each category and the distinct concepts, each count a link to
// those units (the search page, filtered); then every concept with its labelled units. Where the images have
// classes, the units selective for a class, per layer, and on a dataset of classes alone only those.

import { conceptSummary, modelAtlases, modelCard } from "../data.js";
import { html, withCode } from "../dom.js";
import { navigate } from "../router.js";
import { CHANNEL, pageUrl } from "../urls.js";
import { datasetPicker, onDatasetPicked } from "./dataset-picker.js";
import { comparisonSection, kindName } from "./features.js";

export async function mountConcepts(root, { params, query, signal }) {
  const modelId = params.model;
  const [model, atlases] = await Promise.all([modelCard(modelId, { signal }), modelAtlases(modelId, { signal })]);
  const meta = { title: `Concepts · ${model.name}`, crumbs: [
    { label: model.name, href: pageUrl.model(modelId, { dataset: query.dataset }) },
    { label: "concepts", href: pageUrl.concepts(modelId, { dataset: query.dataset }) }] };
  let summary;
  try {
    summary = await conceptSummary(modelId, { dataset: query.dataset }, { signal });
  } catch (error) {
    if (error.status !== 404) throw error;
    root.innerHTML = html`<section class="page-head"><h1>Concepts of ${model.name}</h1>
      <p class="note" role="note">${withCode(error.message)}</p></section>`;
    return meta;
  }
  if (!query.dataset) navigate(pageUrl.concepts(modelId, { dataset: summary.dataset }), { replace: true });
  const filtered = (extra) => pageUrl.search({ model: modelId, dataset: summary.dataset, ...extra });
  const masks = summary.categories.length > 0;
  root.innerHTML = html`
    <section class="page-head">
      <h1>Concepts of ${model.name}</h1>
      <p class="muted">${datasetPicker(atlases, summary.dataset)} · ${masks ? html`concept labels from the
        ${summary.layout} layout · a unit is labelled with its best concept when the IoU of its region (its strongest
        ${(100 * summary.region_fraction).toFixed(1)}% of activations) with the concept's pixels reaches
        ${summary.iou_threshold} (Network Dissection)` : predicted(summary) ? html`images
        without classes or concept masks: units scored against the ${summary.classes.length} classes the model
        predicted for them` : html`the dataset's ${summary.classes.length} classes, no concept masks`}.</p>
    </section>
    ${masks ? labelledSection(summary, modelId, filtered) : ""}
    ${selectivitySection(summary, modelId, filtered)}
    ${comparisonSection(summary, modelId)}
    ${masks ? html`<section class="panel">
      <h2>Concepts</h2>
      <ul class="concept-list">${summary.concepts.map((c) => html`<li>
        ${c.units + c.features ? html`<a href="${filtered({ concept: c.id })}"><span class="chip">${c.name}</span></a>` : html`<span class="chip chip-faint">${c.name}</span>`}
        <span class="muted small" title="${conceptCounts(c)}">${conceptCounts(c)}</span></li>`)}</ul>
    </section>` : ""}`;
  onDatasetPicked(root, signal, (dataset) => navigate(pageUrl.concepts(modelId, { dataset })));
  return meta;
}

/** "shape · 12 units · 13 features · 67 images": channels and dictionary features counted apart. */
function conceptCounts(concept) {
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const features = concept.features ? ` · ${plural(concept.features, "feature")}` : "";
  return `${concept.category} · ${plural(concept.units, "unit")}${features} · ${plural(concept.images, "image")}`;
}

/** NetDissect's table: per layer, the units labelled with a concept of each category. */
function labelledSection(summary, modelId, filtered) {
  // The totals count channels (a dictionary's features are other views of the same layers: its own rows say so).
  const channels = summary.layers.filter((layer) => layer.kind === CHANNEL);
  const totals = Object.fromEntries(summary.categories.map((c) => [c, channels.reduce((n, l) => n + l.labelled[c], 0)]));
  return html`<section class="panel concepts-labelled">
      <h2>Units labelled, per layer and category</h2>
      <div class="table-scroll"><table class="concept-table">
        <thead><tr><th scope="col">layer</th><th scope="col">units</th>${summary.categories.map((c) =>
          html`<th scope="col">${c}</th>`)}<th scope="col">distinct concepts</th></tr></thead>
        <tbody>${summary.layers.map((layer) => html`<tr>
          ${layerCell(summary, layer, modelId)}
          <td>${layer.units}</td>
          ${summary.categories.map((c) => html`<td>${layer.labelled[c]
            ? html`<a href="${filtered({ layer: layer.layer, kind: layer.kind, category: c })}" title="${layer.unique[c]} distinct">${layer.labelled[c]}</a>
              <span class="muted small">${Math.round(100 * layer.labelled[c] / layer.units)}%</span>` : html`<span class="muted">0</span>`}</td>`)}
          <td>${layer.concepts.length}</td></tr>`)}</tbody>
        <tfoot><tr><th scope="row">all channels</th><td>${channels.reduce((n, l) => n + l.units, 0)}</td>${summary.categories.map((c) =>
          html`<td>${totals[c] ? html`<a href="${filtered({ kind: CHANNEL, category: c })}">${totals[c]}</a>` : "0"}</td>`)}<td></td></tr></tfoot>
      </table></div>
      ${unreachableNote(summary, summary.categories.filter((c) => !totals[c]))}
    </section>`;
}

/** Why a category labels no unit at all: a region is a small share of the pixels, so a concept covering much more
 *  of them bounds the IoU (|region| / |concept| at best), often below the threshold. */
function unreachableNote(summary, categories) {
  const bounds = categories.map((category) => {
    const covering = summary.concepts.filter((c) => c.category === category && c.pixels > 0);
    if (!covering.length || !summary.pixels) return null;
    const share = Math.min(...covering.map((c) => c.pixels)) / summary.pixels;
    return { category, share, bound: Math.min(1, summary.region_fraction / share) };
  }).filter(Boolean);
  if (!bounds.length) return "";
  const percent = (x) => `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;
  const names = bounds.map((b, i) => `${i ? (i === bounds.length - 1 ? " or " : ", ") : ""}${b.category}`).join("");
  return html`<p class="muted small panel-note">No unit is labelled with a concept of ${names}. A unit's region is its
    strongest ${percent(summary.region_fraction)} of activations, so its IoU with a concept covering a share <i>f</i>
    of the pixels is at most about ${percent(summary.region_fraction)} / <i>f</i>: ${bounds.map((b, i) => html`${i ? "; " : ""}the
    ${b.category} concepts each cover at least ${percent(b.share)} of them (IoU at most ${b.bound.toFixed(3)})`)},
    against the threshold of ${summary.iou_threshold}.</p>`;
}

/** Whether the classes are the model's predictions (on a dataset without classes), not the images' own. */
const predicted = (summary) => summary.class_source === "predictions";

/** The classes too small (or too large) to score units against, where chance alone reaches a high AUC. */
function unscoredNote(summary) {
  const unscored = Object.entries(summary.unscored_classes ?? {});
  if (!unscored.length) return "";
  return html` Not scored, for fewer than ${summary.min_class_images} images in the class or outside it (chance alone
    would pass the threshold): ${unscored.map(([name, images], i) => html`${i ? ", " : ""}${name} (${images})`)}.`;
}

/** Per layer, the units whose most selective class reaches the AUC setting, and which classes they prefer. */
function selectivitySection(summary, modelId, filtered) {
  if (!summary.classes.length) return "";
  return html`<section class="panel class-selectivity">
    <h2>${predicted(summary) ? "Predicted-class" : "Class"} selectivity, per layer</h2>
    <p class="muted panel-note">The ROC AUC of each unit's maximum over an image, ${predicted(summary)
      ? html`the images the model predicts as one class against the rest: what the unit feeds in the model's
        decisions, not what the images are (in the last layers, partly so by construction)`
      : "one class of the dataset's folders against the rest"}. A unit counts as selective for its best class from
      AUC ${summary.auc_threshold}; each class
      links to its units, the most selective first.${unscoredNote(summary)}</p>
    <div class="table-scroll"><table class="concept-table">
      <thead><tr><th scope="col">layer</th><th scope="col">units</th><th scope="col">selective</th>
        <th scope="col">mean best AUC</th><th scope="col" class="class-column">their classes</th></tr></thead>
      <tbody>${summary.layers.map((layer) => html`<tr data-kind="${layer.kind}">
        ${layerCell(summary, layer, modelId)}
        <td>${layer.units}</td>
        <td>${layer.selective_units} <span class="muted small">${Math.round(100 * layer.selective_units / layer.units)}%</span></td>
        <td>${layer.best_auc_mean === null ? "–" : layer.best_auc_mean.toFixed(3)}</td>
        <td class="class-column">${layer.selective_classes.map((c) => html`<a class="chip" href="${filtered({ class: c.class, layer: layer.layer, kind: layer.kind })}"
          title="${c.units} unit${c.units === 1 ? "" : "s"} selective for ${c.class}">${c.class} <span class="muted">${c.units}</span></a> `)}</td></tr>`)}</tbody>
    </table></div>
  </section>`;
}

/** A summary row's first cell: the layer (with its kind, for a dictionary's features), a link to its grid. */
function layerCell(summary, layer, modelId) {
  return html`<th scope="row"><a href="${pageUrl.layer(modelId, layer.layer, { dataset: summary.dataset, kind: layer.kind })}"><code>${layer.layer}</code>${layer.kind === CHANNEL ? "" : html` <span class="muted small">${kindName(layer.kind)}</span>`}</a></th>`;
}
