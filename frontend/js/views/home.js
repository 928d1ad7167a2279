// Home: every model in the store, with its status.

import { modelList } from "../data.js";
import { formatCount, html, withCode } from "../dom.js";
import { pageUrl } from "../urls.js";

export async function mountHome(root, { signal }) {
  root.innerHTML = html`<p class="muted">Loading models…</p>`;
  const models = await modelList({ signal });
  const ready = models.filter((m) => m.status === "ready").length;
  root.innerHTML = html`
    <section class="intro">
      <h1>Models</h1>
      <p class="muted">${ready} of ${models.length} loaded. Open a model to explore its layers.</p>
    </section>
    ${models.length === 0
      ? html`<p class="empty">No model cards found. Add a card to <code>model_store/</code> or a folder named by <code>FOVEA_MODEL_DIRS</code>.</p>`
      : html`<ul class="model-grid">${models.map(modelCard)}</ul>`}`;
  return { title: "Models", crumbs: [] };
}

function modelCard(model) {
  const accuracy = model.metrics?.heldout_accuracy;
  return html`
    <li class="model-card ${model.status === "ready" ? "" : "is-error"}" data-model="${model.id}">
      <a class="model-card-link" href="${pageUrl.model(model.id)}">
        <div class="model-card-head">
          <h2>${model.name}</h2>
          <span class="badge badge-${model.status}">${model.status}</span>
        </div>
        <p class="model-id"><code>${model.id}</code></p>
        ${model.description ? html`<p class="model-desc">${model.description}</p>` : ""}
        ${model.status === "ready"
          ? html`<dl class="facts">
              <div class="fact-wide"><dt>Architecture</dt><dd><code>${model.architecture}</code></dd></div>
              <div><dt>Parameters</dt><dd>${formatCount(model.parameters)}</dd></div>
              <div><dt>Input</dt><dd>${model.input.size.join("×")}</dd></div>
              <div><dt>Classes</dt><dd>${model.num_classes}</dd></div>
              <div><dt>Layers</dt><dd>${model.layer_count}</dd></div>
              ${accuracy !== undefined ? html`<div><dt>Held-out acc.</dt><dd>${(accuracy * 100).toFixed(1)}%</dd></div>` : ""}
            </dl>`
          : html`<p class="error-text">${withCode(model.error)}</p>`}
      </a>
    </li>`;
}
