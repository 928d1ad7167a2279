// The units of a layer that fire on an image, ranked against their own dataset distribution, each drawn:
// its map on this image, and small, its map on its top dataset image (what it fires on most) and its feature
// visualisation (what drives it most). Maps on the unit's own scale, 0 to its maximum over the dataset, as
// on its page. One request brings every map; each visualisation is an image the server renders once.

import { html } from "../dom.js";
import { decodeMaps, drawHeatmap, loadImage, mapAt } from "../maps.js";
import { getJsonFollowed, noteWaiting } from "../progress.js";
import { modelDictionaries } from "../data.js";
import { CHANNEL, apiUrl, atlasQuery, pageUrl } from "../urls.js";
import { coarseRankingNote, comparedWith, maxAgainstDataset, percentAmong } from "../ranking.js";
import { problemLine } from "./atlas-problem.js";
import { chipTitle } from "./unit-labels.js";

const LIMIT = 12;
const OPACITY = 0.6;

/** `atlas`: the atlas units are ranked against ({ dataset, layers }) or null; `indexed`: whether `layer` is
 *  in it. A layer outside the atlas has no ranking: the strip says which layers have one. */
export async function mountFiredUnits(strip, { imageId, modelId, layer, atlas, indexed, kind = CHANNEL, signal }) {
  if (atlas && !indexed) {
    strip.innerHTML = html`<p class="small"><code>${layer}</code> is not indexed in the <code>${atlas.dataset}</code>
      atlas, so its units have no dataset to be ranked against. Units are ranked on the indexed layers:
      ${atlas.layers.map((name, i) => html`${i ? ", " : ""}<code>${name}</code>`)}.</p>`;
    return;
  }
  let body;
  try {
    body = await getJsonFollowed(apiUrl.firedUnits(imageId, { model: modelId, layer, limit: LIMIT, maps: true,
      ...atlasQuery({ dataset: atlas?.dataset, kind }) }), { signal, onProgress: noteWaiting(strip) });
  } catch (error) {
    if (error.name !== "AbortError") strip.innerHTML = problemLine(error);
    return;
  }
  strip.classList.remove("muted");
  strip.innerHTML = html`<p class="muted small">Against ${comparedWith(body)} of dataset <code>${body.dataset}</code>:
      how many of them this image's spatial mean exceeds. ${coarseRankingNote(body.compared)} Each unit drawn on this image, and small, on the
      dataset image it fires on most (both from 0 to the unit's maximum over the dataset) and, where one is
      stored, the image that drives it most (its feature visualisation, top left; its unit page renders it).</p>
    <ol class="fired-list">${body.units.map((u) => html`<li data-unit="${u.unit}">
      <a href="${pageUrl.unit(modelId, layer, u.unit, { dataset: body.dataset, kind, image: imageId })}" data-unit="${u.unit}">
        <canvas class="fired-map" width="112" height="112" role="img"
          aria-label="unit ${u.unit} on this image"></canvas>
        ${u.label ? html`<span class="chip small fired-label" title="${chipTitle(u.label)}">${u.label.name}</span>` : ""}
        <span class="fired-name" title="${kind === CHANNEL ? `${layer}:${u.unit}` : `${layer} ${kind}:${u.unit}`}">${kind === CHANNEL ? "unit " : "#"}<b>${u.unit}</b></span>
        <span class="value" title="share of the dataset's images this image's spatial mean exceeds">${percentAmong(u.percentile, body.compared)}</span>
        <span class="muted small fired-stats">mean ${u.spatial_mean.toFixed(2)}, <abbr title="z-score: how many standard deviations this image's spatial mean lies above the unit's mean over the dataset">z</abbr> ${u.z.toFixed(1)} ·
          ${maxAgainstDataset(u.spatial_max, u.max_max)}</span>
        ${u.top_image === null ? "" : html`<canvas class="fired-top" width="48" height="48" role="img"
          aria-label="unit ${u.unit} on its top dataset image" title="Its top image in the dataset"></canvas>`}
        ${u.visualized ? html`<img class="fired-vis" src="${apiUrl.visualizationPng(modelId, layer, u.unit, { ...atlasQuery({ kind }), render: "false" })}"
          width="48" height="48" alt="feature visualisation of unit ${u.unit}" title="What drives it most (feature visualisation)">` : ""}
      </a></li>`)}</ol>`;

  const maps = decodeMaps(body.maps);
  const topMaps = decodeMaps(body.top_maps);
  const draw = (canvas, url, map, unit) => loadImage(url).then((picture) => {
    if (signal.aborted || !canvas.isConnected) return;
    drawHeatmap(canvas, picture, map, { low: 0, high: Math.max(unit.max_max, 1e-6), opacity: OPACITY });
    canvas.classList.add("is-drawn");
  }).catch(() => canvas.classList.add("is-missing"));
  // Only stored visualisations are shown (the answer says which): twelve optimisations would hold the model from
  // this page's own work (its unit pages render it, and a first start renders the demo models' default layers).
  strip.querySelectorAll(".fired-vis").forEach((image) => {
    image.addEventListener("load", () => image.classList.add("is-drawn"), { once: true, signal });
    image.addEventListener("error", () => image.remove(), { once: true, signal });
  });
  body.units.forEach((unit, index) => {
    const item = strip.querySelector(`li[data-unit="${unit.unit}"]`);
    draw(item.querySelector(".fired-map"), apiUrl.imageFile(imageId, modelId), mapAt(maps, index), unit);
    if (unit.top_image !== null) {
      draw(item.querySelector(".fired-top"), apiUrl.datasetImage(body.dataset, unit.top_image, modelId),
        mapAt(topMaps, index), unit);
    }
  });
}

/** After the units, the features of each of the layer's dictionaries that fire on the image, ranked the same
 *  way against the same atlas: one section each, after `section` (the units'). */
export async function mountFiredFeatures(section, { imageId, modelId, layer, atlas, signal }) {
  let listing;
  try {
    listing = await modelDictionaries(modelId, { dataset: atlas.dataset }, { signal });
  } catch {
    return;  // no dictionaries to show
  }
  const here = listing.dictionaries.filter((d) => d.layer === layer && d.indexed).reverse();
  await Promise.all(here.map((dictionary) => {
    section.insertAdjacentHTML("afterend", html`<section class="fired fired-features" data-kind="${dictionary.kind}">
      <h2>Features of <code>${dictionary.kind}</code> (<code>${layer}</code>) that fire on this image</h2>
      <div class="fired-strip muted">…</div></section>`);
    const strip = section.nextElementSibling.querySelector(".fired-strip");
    return mountFiredUnits(strip, { imageId, modelId, layer, atlas, indexed: true, kind: dictionary.kind, signal });
  }));
}
