// The unit page's concept labels (docs/concepts.md): the line under its title (label, score, the description
// and how it was written), the side panel of everything dissection measured, and which label's pixels can be
// tinted over the top images.

import { html } from "../dom.js";
import { pageUrl } from "../urls.js";

/** The label concept whose pixels can be drawn over the top images: measured on the atlas shown (its image
 *  ids are the gallery's). */
export function maskableLabel(detail) {
  const labels = detail.labels;
  return labels?.label && labels.layout && labels.dataset === detail.dataset ? labels.label : null;
}

/** A label chip's tooltip: its id and its score (IoU for a concept, AUC for a class, said to be the model's
 *  prediction where the images had no class). */
export const chipTitle = (label) => `${label.id}${label.category === "predicted class" ? " (the model's predicted class)" : ""}, ${
  label.iou !== null ? `IoU ${label.iou.toFixed(2)}` : `AUC ${label.auc.toFixed(2)}`}`;

/** Under the title: the unit's label (its best concept by IoU, else the class it selects by AUC) and its
 *  description, or nothing when no atlas of the model has labels. */
export function labelLine(detail, modelId) {
  const labels = detail.labels;
  if (!labels) return "";
  const elsewhere = labels.dataset !== detail.dataset ? html` <span class="muted small">(measured on <code>${labels.dataset}</code>)</span>` : "";
  const selected = !labels.label && labels.classes[0]?.auc >= labels.auc_threshold ? labels.classes[0] : null;
  return html`<p class="unit-labels">${labels.label ? html`<a class="chip chip-label" href="${pageUrl.search({ concept: labels.label.id, model: modelId })}"
      title="Other units labelled ${labels.label.id}">${labels.label.name}</a>
    <span class="small">IoU ${labels.label.iou.toFixed(2)} · ${labels.label.category}</span>`
    : selected ? html`<a class="chip chip-label" href="${pageUrl.search({ q: selected.class, model: modelId })}"
      title="Units selective for ${selected.class}">${selected.class}</a>
    <span class="small">AUC ${selected.auc.toFixed(2)} · ${classWord(labels)}</span>` : html`<span class="chip chip-faint">no label</span>`}
    <span class="description">${labels.description}${elsewhere}
      <span class="muted small" title="${labels.described_by}">(written from the measured numbers by a template)</span></span></p>`;
}

/** The side panel of everything dissection measured of the unit. */
export function labelsPanel(labels, modelId) {
  if (!labels) return "";
  const concepts = labels.concepts.filter((c) => c.iou > 0);
  const detectors = html`<a href="${pageUrl.concepts(modelId, { dataset: labels.dataset })}">All of the model's detectors</a>`;
  if (labels.layout === null && labels.class_source === "predictions") {  // no classes: the model's predictions
    return html`<section class="panel concept-labels"><h2>Predicted-class selectivity</h2>
      <p class="muted panel-note">On <code>${labels.dataset}</code>, whose images have no classes or concept masks: the
        ROC AUC of the unit's maximum over an image, the images the model predicts as each class against the rest
        (0.5 is chance). It says what the unit feeds in the model's decisions, not what the images are. ${detectors}</p>
      ${classList(labels)}
    </section>`;
  }
  if (labels.layout === null) {  // a dataset of classes: no pixels to overlap
    return html`<section class="panel concept-labels"><h2>Class selectivity</h2>
      <p class="muted panel-note">On <code>${labels.dataset}</code>, whose images have classes but no concept masks: the
        ROC AUC of the unit's maximum over an image, each class against the rest (0.5 is chance). ${detectors}</p>
      ${classList(labels)}
    </section>`;
  }
  return html`<section class="panel concept-labels"><h2>Concept labels</h2>
    <p class="muted panel-note">Network Dissection on <code>${labels.dataset}</code>: the overlap (IoU) of the unit's
      strongest 0.5% of activations with each concept's pixels; labelled from IoU ${labels.iou_threshold}. ${detectors}</p>
    ${concepts.length ? html`<ol class="concept-scores">${concepts.map((c) => html`<li>
      <a href="${pageUrl.search({ concept: c.id, model: modelId })}" class="chip ${c.iou >= labels.iou_threshold ? "" : "chip-faint"}">${c.name}</a>
      <span class="muted small">${c.category}</span> <span class="bar" style="--value: ${Math.min(c.iou / 0.3, 1)}"></span>
      <span class="small">${c.iou.toFixed(3)}</span></li>`)}</ol>` : html`<p class="muted small">Its region overlaps no concept.</p>`}
    ${labels.formula ? html`<p class="small"><b>Best formula</b> <code>${labels.formula.text}</code> IoU ${labels.formula.iou.toFixed(3)}</p>` : ""}
    ${classList(labels)}
  </section>`;
}

/** "class", or "predicted class" where the classes are the model's predictions for images without any. */
const classWord = (labels) => (labels.class_source === "predictions" ? "predicted class" : "class");

/** The classes the unit fires on more than on the rest (AUC above 0.5, chance): one below is not "selective". */
function classList(labels) {
  const above = labels.classes.filter((c) => c.auc > 0.5);
  return above.length ? html`<p class="small"><b>Most selective ${classWord(labels)}es</b> ${above.map((c, i) =>
    html`${i ? ", " : ""}${c.class} <span class="muted">(AUC ${c.auc.toFixed(2)})</span>`)}</p>` : "";
}
