// Model page: the card's facts and every explorable layer with its output shape.
// View state (the layer filter and "all layers") lives in the URL query.

import { modelAtlases, modelCard, modelDictionaries } from "../data.js";
import { formatCount, html, runnable, withCode } from "../dom.js";
import { namingExample } from "../layer-nav.js";
import { navigate } from "../router.js";
import { apiUrl, pageUrl } from "../urls.js";
import { datasetPicker, onDatasetPicked } from "./dataset-picker.js";
import { dictionariesSection } from "./features.js";
import { layerRole } from "./layer-role.js";
import { trainedOnText } from "./trained-on.js";

export async function mountModel(root, { params, query, signal }) {
  root.innerHTML = html`<p class="muted">Loading ${params.model}…</p>`;
  const [model, atlases] = await Promise.all([modelCard(params.model, { signal }), modelAtlases(params.model, { signal })]);
  // The atlas that layer links open: the picked one (named in this page's URL only when picked), else the default.
  const state = { q: query.q ?? "", all: query.all === "1", picked: query.dataset || null };
  const atlas = atlases.find((a) => a.dataset === state.picked) ?? atlases.find((a) => a.default) ?? null;
  const dictionaries = model.status === "ready"
    ? await modelDictionaries(model.id, atlas ? { dataset: atlas.dataset } : {}, { signal }).catch((error) => {
      if (error.name === "AbortError") throw error;
      return null;  // the layers still show
    }) : null;

  root.innerHTML = html`
    <section class="model-head">
      <div class="title-row">
        <h1>${model.name}</h1>
        <span class="badge badge-${model.status}">${model.status}</span>
      </div>
      <p class="model-id"><code>${model.id}</code> · card <code>${model.card}</code></p>
      ${model.description ? html`<p class="model-desc">${model.description}</p>` : ""}
      ${model.status === "ready" ? facts(model) : html`<p class="error-text">${withCode(model.error)}</p>`}
    </section>
    ${model.status === "ready" ? html`
      <section class="layers">
        <div class="layers-bar">
          <h2>Layers</h2>
          <label class="filter"><span class="sr-only">Filter layers</span>
            <input type="search" name="q" placeholder="Filter layers" value="${state.q}" autocomplete="off">
          </label>
          <label class="toggle"><input type="checkbox" name="all" ${state.all ? "checked" : ""}> all layers</label>
          ${atlas ? html`<span class="muted">${datasetPicker(atlases, atlas.dataset)}: ${atlas.layers.length} layers
            indexed on ${formatCount(atlas.images)} images</span>`
            : model.status === "ready" ? html`<span class="muted small no-atlas"><b>No atlas yet:</b> a layer's page lists its
              units once <code>${runnable(`fovea index ${model.id} --dataset PATH`)}</code> has recorded them; maps and CAMs on any image
              work without one.</span>` : ""}
          ${atlases.some((a) => a.labels) ? html`<a class="button" href="${pageUrl.concepts(model.id, atlas?.labels ? { dataset: atlas.dataset } : {})}">Concept detectors</a>` : ""}
        </div>
        ${naming(model.layers)}
        <p class="muted layers-count" aria-live="polite"></p>
        <div class="table-wrap">
          <table class="layer-table">
            <thead><tr><th>Layer</th><th class="hide-narrow">Type</th><th class="num">Units</th><th class="num">Map</th><th class="num hide-narrow">Params</th></tr></thead>
            <tbody></tbody>
          </table>
        </div>
      </section>
      ${dictionariesSection(dictionaries, model.id)}` : ""}`;

  if (model.status === "ready") {
    const body = root.querySelector("tbody");
    const count = root.querySelector(".layers-count");
    const update = () => {
      const needle = state.q.trim().toLowerCase();
      const shown = model.layers.filter((layer) => (state.all || layer.default)
        && (!needle || layer.name.toLowerCase().includes(needle) || layer.type.toLowerCase().includes(needle)));
      body.innerHTML = html`${shown.map((layer) => layerRow(model.id, layer, model.layers, atlas))}`;
      count.textContent = `${shown.length} of ${model.layers.length} layers${state.all ? "" : " (default selection)"}`;
      navigate(pageUrl.model(model.id, { q: state.q, all: state.all, dataset: state.picked }), { replace: true });
    };
    root.querySelector("input[name=q]").addEventListener("input", (event) => {
      state.q = event.target.value;
      update();
    }, { signal });
    root.querySelector("input[name=all]").addEventListener("change", (event) => {
      state.all = event.target.checked;
      update();
    }, { signal });
    onDatasetPicked(root, signal, (dataset) => navigate(pageUrl.model(model.id, { q: state.q, all: state.all, dataset })));
    update();
  }
  return { title: model.name, crumbs: [{ label: model.name, href: pageUrl.model(model.id) }] };
}

// A card's metric key in words: `heldout_accuracy` reads "held-out accuracy", as the home page's card says it.
const metricName = (key) => key.replaceAll("_", " ").replace(/\bheldout\b/, "held-out");

function facts(model) {
  const { input, weights } = model;
  const metrics = Object.entries(model.metrics);
  return html`
    <dl class="facts facts-wide">
      <div class="fact-wide"><dt>Architecture</dt><dd><code>${model.architecture}</code></dd></div>
      <div class="fact-wide trained-on"><dt>Trained on</dt><dd>${trainedOnText(model)}</dd></div>
      <div><dt>Parameters</dt><dd>${formatCount(model.parameters)}</dd></div>
      <div><dt>Input</dt><dd>${input.size.join("×")}${input.resize ? html` (resize ${input.resize})` : ""}</dd></div>
      <div><dt>Normalisation</dt><dd>mean ${input.mean.map((v) => v.toFixed(3)).join(", ")}; std ${input.std.map((v) => v.toFixed(3)).join(", ")}</dd></div>
      <div><dt>Weights</dt><dd><code>${weights.name}</code>${weights.verified ? html` <span class="badge badge-ready" title="sha256 ${weights.sha256}">verified</span>` : ""}</dd></div>
      <div><dt>Device</dt><dd>${model.device}</dd></div>
      ${metrics.map(([key, value]) => html`<div><dt>${metricName(key)}</dt><dd>${typeof value === "number" && value <= 1 ? `${(value * 100).toFixed(1)}%` : value}</dd></div>`)}
    </dl>
    <details class="labels"><summary>${model.num_classes} classes</summary>
      <ol start="0">${model.labels.map((label) => html`<li>${label}</li>`)}</ol>
    </details>`;
}

// How `block3` and `block3.2 (ReLU)` differ, said once with this model's own names; each row says the rest.
function naming(layers) {
  const example = namingExample(layers);
  return html`<details class="naming"><summary>How layers are named</summary>
    <p>A layer is a module of the model, named by its path as PyTorch's <code>named_modules()</code> writes it:
      each dot steps into a block, whose modules count from 0.${example ? html` So <code>${example.parent.name}</code>
      is a whole block (${example.parent.type}) and <code>${example.child.name}</code> (${example.child.type}) is
      module ${example.child.name.split(".").at(-1)} inside it: ${layerRole(layers, example.child.name)}.` : ""}</p>
    <p>A block's layer is its output as a whole; a Sequential block's is the same as its last module's.
      Convolutions (Conv2d) and normalisations (BatchNorm2d) hold signed values, before the activation;
      activations (ReLU, Hardswish, …) hold what the next layer reads. <span class="tag">extra</span> marks a layer
      outside the default selection; "all layers" lists every module with a spatial output.</p>
  </details>`;
}

function layerRow(modelId, layer, layers, atlas) {
  const [c, h, w] = layer.shape;
  const indexed = atlas?.layers.includes(layer.name);
  return html`<tr data-layer="${layer.name}">
    <td><a href="${pageUrl.layer(modelId, layer.name, { dataset: atlas?.dataset })}"><code>${layer.name}</code></a>${layer.default ? "" : html` <span class="tag">extra</span>`}${indexed ? html` <span class="tag tag-indexed" title="in the ${atlas.dataset} atlas">indexed</span>` : ""}
      <span class="layer-note">${layerRole(layers, layer.name)}</span></td>
    <td class="hide-narrow">${layer.type}</td>
    <td class="num">${c}</td>
    <td class="num">${h}×${w}</td>
    <td class="num hide-narrow">${formatCount(layer.parameters)}</td>
  </tr>`;
}
