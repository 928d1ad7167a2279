// The image page, /image/{id}?model=..&layer=..&methods=..&target=..: the image, the model's predictions,
// class activation maps of the chosen layer side by side (views/cam-grid.js), and the units of that layer
// that fire on it against their own dataset distribution. `/image` alone is the upload page.

import { ApiError, getJson } from "../api.js";
import { camQuery, camViewState } from "../cam-view.js";
import { html } from "../dom.js";
import { describeProgress, getJsonFollowed } from "../progress.js";
import { navigate } from "../router.js";
import { mountUploadZone } from "../upload-zone.js";
import { apiUrl, pageUrl } from "../urls.js";
import { mountCamStudio } from "./cam-grid.js";

const QUICK_FIRST_MS = 1000;

export async function mountUpload(root, { query, signal }) {
  root.innerHTML = html`<section class="page-head"><h1>Study an image</h1>
    <p class="muted">Upload an image to see what a model predicts and which units fire on it.</p></section>
    <div class="upload-slot"></div>`;
  mountUploadZone(root.querySelector(".upload-slot"), {
    signal, onUploaded: (answer) => navigate(pageUrl.image(answer.id, { model: query.model, layer: query.layer })),
  });
  return { title: "Upload", crumbs: [{ label: "image", href: pageUrl.upload() }] };
}

export async function mountImage(root, { params, query, signal }) {
  const imageId = params.image;
  const [info, models, { methods }] = await Promise.all([getJson(apiUrl.image(imageId), { signal }),
    getJson(apiUrl.models(), { signal }), getJson(apiUrl.methods(), { signal })]);
  const ready = models.filter((m) => m.status === "ready");
  if (!ready.length) throw new ApiError(409, "no_models", "No model is ready to look at this image.");
  const modelId = ready.some((m) => m.id === query.model) ? query.model : ready[0].id;
  const model = await getJson(apiUrl.model(modelId), { signal });
  const layers = model.layers.filter((l) => l.default);
  const layer = model.layers.some((l) => l.name === query.layer) ? query.layer : layers.at(-1)?.name;
  const cams = camViewState(query, methods.map((m) => m.id));
  if (cams.target !== null && cams.target >= model.labels.length) cams.target = null;
  let state = { model: modelId, layer, ...camQuery(cams) };

  root.innerHTML = html`<section class="page-head image-head" data-image="${imageId}">
      <div class="title-row">
        <h1>${info.source === "upload" ? info.name || "Uploaded image" : html`<code>${imageId}</code>`}</h1>
        <nav class="stepper"><button type="button" class="button copy-link">Copy link</button></nav>
      </div>
      <p class="muted">${info.width} × ${info.height}${info.format ? ` · ${info.format}` : ""}${info.label
        ? html` · label <b>${info.label}</b>` : ""}</p>
      <div class="toolbar">
        <label>Model <select name="model">${ready.map((m) => html`<option value="${m.id}" ${m.id === modelId ? "selected" : ""}>${m.name}</option>`)}</select></label>
        <label>Layer <select name="layer">${model.layers.map((l) => html`<option value="${l.name}" ${l.name === layer ? "selected" : ""}>${l.name}</option>`)}</select></label>
      </div>
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
    (e) => go({ model: e.target.value, layer: undefined, target: undefined }), { signal });  // other classes
  root.querySelector("select[name=layer]").addEventListener("change", (e) => go({ layer: e.target.value }), { signal });
  root.querySelector(".copy-link").addEventListener("click", async (event) => {
    await navigator.clipboard.writeText(location.href).catch(() => {});
    event.target.textContent = "Link copied";
  }, { signal });
  mountUploadZone(root.querySelector(".upload-another .upload-slot"), {
    signal, compact: true, onUploaded: (answer) => navigate(pageUrl.image(answer.id, state)),
  });
  if (location.pathname + location.search !== pageUrl.image(imageId, state)) {
    navigate(pageUrl.image(imageId, state), { replace: true });  // the defaults chosen, written into the link
  }

  // One forward pass each: asked for first, so that they do not queue behind this page's own Score-CAM. The
  // maps wait a second at most: a model busy with another page's request keeps both waiting anyway.
  const quick = Promise.race([Promise.all([
    showPredictions(root.querySelector(".predictions"), imageId, modelId, signal),
    layer && showFiredUnits(root.querySelector(".fired-strip"), imageId, modelId, layer, signal),
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

// While another request holds the model, a pending panel says so (its "…" would look like a hang).
const noteWaiting = (element) => (progress) => {
  const note = describeProgress(progress, new Map());
  if (note) element.textContent = `${note[0].toUpperCase()}${note.slice(1)}.`;
};

async function showPredictions(panel, imageId, modelId, signal) {
  try {
    const body = await getJsonFollowed(apiUrl.predictions(imageId, { model: modelId, k: 5 }),
      { signal, onProgress: noteWaiting(panel.querySelector("p")) });
    panel.innerHTML = html`<h2>Predictions</h2><ol class="prediction-list">${body.predictions.map((p) => html`
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

async function showFiredUnits(strip, imageId, modelId, layer, signal) {
  try {
    const body = await getJsonFollowed(apiUrl.firedUnits(imageId, { model: modelId, layer, limit: 12 }),
      { signal, onProgress: noteWaiting(strip) });
    strip.classList.remove("muted");
    strip.innerHTML = html`<p class="muted small">Against ${body.images} images of dataset <code>${body.dataset}</code>:
      how many of them this image's spatial mean exceeds.</p>
      <ol class="fired-list">${body.units.map((u) => html`<li><a href="${pageUrl.unit(modelId, layer, u.unit)}" data-unit="${u.unit}">
        <code>${layer}:${u.unit}</code><span class="value">${(u.percentile * 100).toFixed(1)}%</span>
        <span class="muted small">mean ${u.spatial_mean.toFixed(2)}, z ${u.z.toFixed(1)}</span></a></li>`)}</ol>`;
  } catch (error) {
    if (error.name !== "AbortError") strip.innerHTML = html`<p class="error-text">${error.message}</p>`;
  }
}
