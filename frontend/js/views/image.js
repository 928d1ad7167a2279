// The image page, /image/{id}?model=..&layer=..&methods=..&target=..: the image, the model's predictions
// (with what the model was trained on), class activation maps of the chosen layer side by side
// (views/cam-grid.js), and the units of that layer that fire on it against their own dataset distribution,
// each drawn on the image (views/fired-units.js). `/image` alone is the upload page, with sample images.

import { ApiError } from "../api.js";
import { camQuery, camViewState, layerChoice, newImageQuery, unmetRequests } from "../cam-view.js";
import { mountCopyLink } from "../copy-link.js";
import { datasetSamples, imageInfo, modelAtlases, modelCard, modelList } from "../data.js";
import { datasetPicker, onDatasetPicked } from "./dataset-picker.js";
import { html } from "../dom.js";
import { getJsonFollowed, noteWaiting } from "../progress.js";
import { navigate } from "../router.js";
import { mountUploadZone } from "../upload-zone.js";
import { apiUrl, pageUrl } from "../urls.js";
import { methodList } from "../vocabularies.js";
import { mountCamStudio } from "./cam-grid.js";
import { mountFiredFeatures, mountFiredUnits } from "./fired-units.js";
import { trainedOn } from "./trained-on.js";

const QUICK_FIRST_MS = 1000;

export async function mountUpload(root, { query, signal }) {
  root.innerHTML = html`<section class="page-head"><h1>Study an image</h1>
    <p class="muted">Upload an image to see what a model predicts and which units fire on it.</p></section>
    <div class="upload-slot"></div>
    <section class="samples" hidden></section>`;
  mountUploadZone(root.querySelector(".upload-slot"), {
    signal, onUploaded: (answer) => navigate(pageUrl.image(answer.id, { model: query.model, layer: query.layer })),
  });
  showSamples(root.querySelector(".samples"), { model: query.model, layer: query.layer }, signal);
  return { title: "Upload", crumbs: [{ label: "image", href: pageUrl.upload() }] };
}

/** Where the model shown has no atlas, its units have nothing to be ranked against: the models that have one, each
 *  a link to this image with it, and the command that gives this one an atlas of the user's own images. */
async function showNoAtlas(strip, { imageId, model, others, state, signal }) {
  let withAtlas = [];
  try {
    const lists = await Promise.all(others.map((m) => modelAtlases(m.id, { signal })));
    withAtlas = others.filter((_, i) => lists[i].length);
  } catch (error) {
    if (error.name === "AbortError") return;
  }
  strip.innerHTML = html`<p class="small"><b>${model.name}</b> has no atlas yet, so its units have no dataset to be
      ranked against.${withAtlas.length ? html` ${withAtlas.map((m, i) => html`${i ? ", " : ""}<a href="${pageUrl.image(imageId,
        { ...state, model: m.id, layer: undefined, target: undefined, dataset: undefined })}">${m.name}</a>`)}
      ${withAtlas.length === 1 ? "has one: see its" : "have one: see their"} units on this image.` : ""}
    To give ${model.name} an atlas of your own images: <code>fovea index ${model.id} --dataset PATH</code>.</p>`;
}

// Images to start from, one per class: of the atlas dataset of the model an upload opens with, else of the
// first ready model that has an atlas (the demo's shapes, when the ImageNet model has none yet); none without
// an atlas, and no request that could only fail.
async function showSamples(section, query, signal) {
  let body;
  let chosen;
  try {
    const ready = (await modelList({ signal })).filter((m) => m.status === "ready");
    const opening = ready.find((m) => m.id === query.model) ?? (ready.length ? openingModel(ready, "upload") : null);
    const candidates = opening ? [opening, ...ready.filter((m) => m !== opening)] : [];
    const atlases = await Promise.all(candidates.map((m) => modelAtlases(m.id, { signal })));
    const at = atlases.findIndex((list) => list.length);
    if (at < 0) return;
    chosen = candidates[at];
    const atlas = atlases[at].find((a) => a.default) ?? atlases[at][0];
    body = await datasetSamples(atlas.dataset, { signal });
  } catch {
    return;  // nothing to offer
  }
  if (!body.images.length) return;
  const link = { ...query, model: query.model ?? chosen.id };
  const classes = body.images.some((image) => image.label);
  section.innerHTML = html`<h2>Or start from a sample</h2>
    <p class="muted small">${classes ? "One image of each class" : "The first images"} of the
      <code>${body.dataset}</code> dataset, ${chosen.demo ? "the kind of image the demo models were trained on"
      : html`on which <b>${chosen.name}</b> has its atlas`}.</p>
    <ul class="sample-list">${body.images.map((image) => html`<li><a href="${pageUrl.image(image.id, link)}">
      <img src="${image.url}" alt="" width="96" height="96" loading="lazy"><span>${image.label ?? image.id}</span></a></li>`)}</ul>`;
  section.hidden = false;
}

/** The model an image opens with when its link names none: the first ready one, except that an upload (most
 *  often a photo) skips the demo models, which know only their shapes, when another model is ready. */
function openingModel(ready, imageId) {
  const upload = !imageId.includes(":");  // dataset images are `dataset:index`
  return (upload && ready.find((m) => !m.demo)) || ready[0];
}

export async function mountImage(root, { params, query, signal }) {
  const imageId = params.image;
  const [info, models, methods] = await Promise.all([imageInfo(imageId, { signal }), modelList({ signal }),
    methodList({ signal })]);
  const ready = models.filter((m) => m.status === "ready");
  if (!ready.length) throw new ApiError(409, "no_models", "No model is ready to look at this image.");
  const modelId = ready.some((m) => m.id === query.model) ? query.model : openingModel(ready, imageId).id;
  const [model, atlases] = await Promise.all([modelCard(modelId, { signal }), modelAtlases(modelId, { signal })]);
  // The atlas fired units are ranked against: the one a link names, else the model's default.
  const atlas = atlases.find((a) => a.dataset === query.dataset) ?? atlases.find((a) => a.default) ?? atlases[0] ?? null;
  const { layer, groups, indexed } = layerChoice(model.layers, atlas, query.layer);
  const cams = camViewState(query, methods);
  if (cams.target !== null && cams.target >= model.labels.length) cams.target = null;
  // A dataset named by the link stays in it; without one, the default atlas is used and the link stays short.
  const named = query.dataset && query.dataset === atlas?.dataset ? query.dataset : undefined;
  let state = { model: modelId, layer, dataset: named, ...camQuery(cams) };
  const unmet = unmetRequests(query, { model: modelId, layer, methodIds: methods.map((m) => m.id), target: cams.target,
    classes: model.labels.length, dataset: atlas?.dataset });

  root.innerHTML = html`<section class="page-head image-head" data-image="${imageId}">
      <div class="title-row">
        <h1>${info.source === "upload" ? info.name || "Uploaded image" : html`<code>${imageId}</code>`}</h1>
        <nav class="stepper"><button type="button" class="button copy-link">Copy link</button></nav>
      </div>
      <p class="muted">${info.width} × ${info.height}${info.format ? ` · ${info.format}` : ""}${info.label
        ? html` · label <b>${info.label}</b>` : ""}</p>
      <div class="toolbar">
        <label>Model <select name="model">${ready.map((m) => html`<option value="${m.id}" ${m.id === modelId ? "selected" : ""}>${m.name}</option>`)}</select></label>
        <label>Layer <select name="layer">${groups.map((group) => html`<optgroup label="${group.label}">${group.names.map((name) =>
          html`<option value="${name}" ${name === layer ? "selected" : ""}>${name}</option>`)}</optgroup>`)}</select></label>
        ${atlas ? html`<span class="small muted layer-index-note">${datasetPicker(atlases, atlas.dataset)}: ${indexed
          ? "layer indexed" : "layer not indexed, so maps only, no units ranked"}</span>` : ""}
      </div>
      ${unmet.length ? html`<div class="note unmet-link" role="note"><b>This link asked for what is not here:</b>
        <ul>${unmet.map((line) => html`<li>${line}</li>`)}</ul></div>` : ""}
    </section>
    <div class="image-layout">
      <section class="cam-studio"></section>
      <aside class="image-side">
        <section class="panel predictions"><h2>Predictions</h2><p class="muted">…</p></section>
        <section class="panel upload-another"><h2>Another image</h2><div class="upload-slot"></div></section>
      </aside>
    </div>
    <section class="fired"><h2>Units of <code>${layer}</code> that fire on this image</h2><div class="fired-strip muted">…</div></section>`;

  const go = (changes) => navigate(pageUrl.image(imageId, { ...state, ...changes }));
  root.querySelector("select[name=model]").addEventListener("change",
    (e) => go({ model: e.target.value, layer: undefined, target: undefined, dataset: undefined }), { signal });  // other classes
  root.querySelector("select[name=layer]").addEventListener("change", (e) => go({ layer: e.target.value }), { signal });
  onDatasetPicked(root, signal, (dataset) => go({ dataset }));  // the atlas fired units are ranked against
  mountCopyLink(root.querySelector(".copy-link"), { signal });
  mountUploadZone(root.querySelector(".upload-another .upload-slot"), {
    signal, compact: true, onUploaded: (answer) => navigate(pageUrl.image(answer.id, newImageQuery(state))),
  });
  if (location.pathname + location.search !== pageUrl.image(imageId, state)) {
    navigate(pageUrl.image(imageId, state), { replace: true });  // the defaults chosen, written into the link
  }

  // One forward pass each: asked for first, so that they do not queue behind this page's own Score-CAM. The
  // maps wait a second at most: a model busy with another page's request keeps both waiting anyway.
  const quick = Promise.race([Promise.all([
    showPredictions(root.querySelector(".predictions"), imageId, model, signal),
    layer && (atlas ? mountFiredUnits(root.querySelector(".fired-strip"), { imageId, modelId, layer, atlas, indexed, signal })
      : showNoAtlas(root.querySelector(".fired-strip"), { imageId, model, others: ready.filter((m) => m.id !== modelId), state, signal })),
    layer && indexed && mountFiredFeatures(root.querySelector(".fired"), { imageId, modelId, layer, atlas, signal }),
  ]), new Promise((resolve) => { setTimeout(resolve, QUICK_FIRST_MS); })]);
  if (layer) {
    mountCamStudio(root.querySelector(".cam-studio"), { imageId, model, layer, methods, state: cams, signal,
      after: quick, onStateChange: (changes) => {
        state = { ...state, ...changes };
        navigate(pageUrl.image(imageId, state), { replace: true });
      } });
  }
  // The image's crumb opens it with this model's defaults: the studio's choices live in the address bar.
  const crumbs = [{ label: "image", href: pageUrl.upload() }, { label: imageId, href: pageUrl.image(imageId, { model: modelId }) }];
  return { title: `Image ${imageId}`, crumbs };
}

async function showPredictions(panel, imageId, model, signal) {
  try {
    const body = await getJsonFollowed(apiUrl.predictions(imageId, { model: model.id, k: 5 }),
      { signal, onProgress: noteWaiting(panel.querySelector("p")) });
    // What the model knows comes before its numbers: a shapes model calls any photo a shape.
    panel.innerHTML = html`<h2>Predictions</h2>${trainedOn(model)}<ol class="prediction-list">${body.predictions.map((p) => html`
      <li><button type="button" data-class="${p.class}" title="Explain ${p.label}"><span class="label">${p.label}</span>
        <span class="bar" style="--share:${p.probability}"></span>
        <span class="value">${(p.probability * 100).toFixed(1)}%</span></button></li>`)}</ol>
      <p class="small muted">Pick a class to see where the model finds it.</p>`;
    panel.querySelector(".prediction-list").addEventListener("click", (event) => {
      const chosen = event.target.closest("button[data-class]");
      const target = document.querySelector(".cam-studio select[name=target]");
      if (!chosen || !target) return;
      target.value = chosen.dataset.class;
      target.dispatchEvent(new Event("change"));
    }, { signal });
  } catch (error) {
    if (error.name !== "AbortError") panel.innerHTML = html`<h2>Predictions</h2><p class="error-text">${error.message}</p>`;
  }
}

