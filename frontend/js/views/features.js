// Dictionary features on the pages (a dictionary's features are units of a kind named after it): what only a
// feature has on its unit page (the channels that compose it, its nearest features), the layer page's switch
// between the layer's channels and its dictionaries' features, the model page's list of dictionaries, and the
// concepts page's comparison of channels with features.

import { html, runnable } from "../dom.js";
import { CHANNEL, pageUrl } from "../urls.js";

const percent = (value) => `${(100 * value).toFixed(1)}%`;

/** "channels" or "sae-384 features": what a kind's units are called. */
export const kindName = (kind) => (kind === CHANNEL ? "channels" : `${kind} features`);

/** The unit page's panels of a feature: its composition and its nearest features ("" for a channel). */
export function featurePanels(feature, { modelId, layer, dataset, unitQuery }) {
  if (!feature) return "";
  const top = Math.max(...feature.composition.map((c) => Math.abs(c.weight)), 1e-9);
  return html`
    <section class="panel feature-composition"><h2>Composed of channels</h2>
      <p class="muted panel-note">The feature's direction in the channel space of <code>${layer}</code>: its largest
        weights (unit length in all). Each channel has its own page.</p>
      <ol class="weights">${feature.composition.map((c) => html`<li>
        <a href="${pageUrl.unit(modelId, layer, c.unit, { dataset })}"><code>${layer}:${c.unit}</code></a>
        <span class="weight-bar ${c.weight < 0 ? "is-negative" : ""}" style="--share: ${Math.abs(c.weight) / top}"
          aria-hidden="true"></span>
        <span class="muted small">${c.weight >= 0 ? "+" : "−"}${Math.abs(c.weight).toFixed(3)}</span></li>`)}</ol>
    </section>
    <section class="panel feature-nearest"><h2>Nearest features</h2>
      <p class="muted panel-note">Features of <code>${feature.dictionary.kind}</code> whose directions are closest (cosine).</p>
      <ol class="similar">${feature.nearest.map((n) => html`<li>
        <a href="${pageUrl.unit(modelId, layer, n.unit, unitQuery())}" data-unit="${n.unit}"><code>${feature.dictionary.kind}:${n.unit}</code></a>
        <span class="muted">cos ${n.cosine.toFixed(2)}</span></li>`)}</ol>
    </section>`;
}

const FACTORISATIONS = { nmf: "NMF", "semi-nmf": "Semi-NMF" };

/** A dictionary in a line: method, size, sparsity and how well it reconstructs the layer. */
export function dictionaryFacts(dictionary) {
  const f = dictionary.figures;
  const method = dictionary.method === "sae" ? `TopK sparse autoencoder, ${dictionary.sparsity} active`
    : FACTORISATIONS[dictionary.method] ?? dictionary.method;
  return `${method}, ${dictionary.size} features over ${dictionary.channels} channels · ${percent(f.variance_explained)} `
    + `of the variance explained on ${f.vectors.toLocaleString("en")} held-out positions · `
    + `${f.mean_active.toFixed(1)} active per position · ${f.dead_features} never active there`;
}

/** The layer page's switch between its kinds of unit (nothing when it has only channels). */
export function kindSwitch(kinds, current, { modelId, layer, query }) {
  if (!kinds || kinds.length < 2) return "";
  return html`<nav class="segmented kind-switch" aria-label="Kind of unit">${kinds.map((kind) => html`
    <a class="button" href="${pageUrl.layer(modelId, layer, { ...query, kind })}"
      aria-current="${kind === current ? "page" : "false"}">${kindName(kind)}</a>`)}</nav>`;
}

/** The model page's section: each dictionary with its figures and a link to its features. */
export function dictionariesSection(listing, modelId) {
  if (!listing?.dictionaries.length) return "";
  return html`<section class="panel dictionaries">
    <h2>Dictionaries</h2>
    <p class="muted panel-note">Directions in a layer's channel space learned from its activations
      (<code>fovea dictionary</code>); each feature is browsed like a unit.</p>
    <ul class="dictionary-list">${listing.dictionaries.map((d) => html`<li>
      ${d.indexed ? html`<a href="${d.page}"><code>${d.layer}</code> · <b>${d.kind}</b></a>`
        : html`<code>${d.layer}</code> · <b>${d.kind}</b> <span class="muted small">(not in this atlas: run
          <code>${runnable(`fovea index ${modelId} --dataset ${listing.dataset === "demo" ? "demo" : "PATH"}`)}</code>)</span>`}
      <span class="muted small">${dictionaryFacts(d)}</span></li>`)}</ul>
  </section>`;
}

/** The concepts page's comparison: for each layer with a dictionary, its channels and each dictionary's features
 *  side by side: by concept labels (labelled units, mean best IoU, distinct concepts) where the images have
 *  concept masks, by class selectivity (selective units, mean best AUC, distinct classes) where they have classes. */
export function comparisonSection(summary, modelId) {
  const byLayer = new Map();
  for (const row of summary.layers) byLayer.set(row.layer, [...(byLayer.get(row.layer) ?? []), row]);
  const compared = [...byLayer.values()].filter((rows) => rows.length > 1);
  if (!compared.length) return "";
  const masks = summary.categories.length > 0;
  const classes = summary.classes.length > 0;
  const measures = [masks ? "a concept labels (IoU from " + summary.iou_threshold + "), their best IoU on average "
    + "(labelled or not), and how many distinct concepts they find" : "",
  classes ? "a class selects (its best class's AUC from " + summary.auc_threshold + "), their best AUC on average, "
    + "and how many distinct classes they prefer" : ""].filter(Boolean).join("; and how many ");
  return html`<section class="panel comparison">
    <h2>Channels and dictionary features</h2>
    <p class="muted panel-note">Is a dictionary more interpretable than the neurons? For each layer with a dictionary:
      how many of each kind of unit ${measures}.</p>
    <div class="table-scroll"><table class="concept-table">
      <thead><tr><th scope="col">layer</th><th scope="col">kind</th><th scope="col">units</th>
        ${masks ? html`<th scope="col">labelled</th><th scope="col">mean best IoU</th><th scope="col">distinct concepts</th>` : ""}
        ${classes ? html`<th scope="col">selective</th><th scope="col">mean best AUC</th><th scope="col">distinct classes</th>` : ""}</tr></thead>
      <tbody>${compared.flat().map((row) => html`<tr data-kind="${row.kind}">
        <th scope="row"><code>${row.layer}</code></th>
        <td><a href="${pageUrl.layer(modelId, row.layer, { dataset: summary.dataset, kind: row.kind })}">${kindName(row.kind)}</a></td>
        <td>${row.units}</td>
        ${masks ? html`<td>${row.labelled_units} <span class="muted small">${percent(row.labelled_units / row.units)}</span></td>
        <td>${fixed(row.best_iou_mean)}</td>
        <td>${row.concepts.length}</td>` : ""}
        ${classes ? html`<td>${row.selective_units} <span class="muted small">${percent(row.selective_units / row.units)}</span></td>
        <td>${fixed(row.best_auc_mean)}</td>
        <td>${row.selective_classes.length}</td>` : ""}</tr>`)}</tbody>
    </table></div>
  </section>`;
}

const fixed = (value) => (value === null ? "–" : value.toFixed(3));
