// The unit on the image the user came from: a unit page opened from an image page's "units that fire"
// (`?image=<id>`) shows first the unit's map on that image, on the unit's own scale (0 to its maximum over
// the dataset, as its gallery), how unusual that is for the unit and where it ranks among the layer's units.

import { html } from "../dom.js";
import { decodeMaps, drawHeatmap, loadImage, mapAt } from "../maps.js";
import { getJsonFollowed, noteWaiting } from "../progress.js";
import { coarseRankingNote, comparedWith, overDatasetMax, percentAmong } from "../ranking.js";
import { apiUrl, atlasQuery, pageUrl } from "../urls.js";

/** Prepend the card to `section` (the unit page's gallery section); `dataset`: the atlas the page shows. */
export async function mountUnitOnImage(section, { modelId, layer, unit, imageId, dataset, kind, opacity, signal }) {
  const card = document.createElement("section");
  card.className = "on-image panel";
  card.innerHTML = html`<h2>On your image</h2><p class="muted small">…</p>`;
  section.prepend(card);
  let body;
  try {
    body = await getJsonFollowed(apiUrl.firedUnits(imageId, { model: modelId, layer, unit, maps: true,
      ...atlasQuery({ dataset, kind }) }),
      { signal, onProgress: noteWaiting(card.querySelector("p")) });
  } catch (error) {
    if (error.name !== "AbortError") card.querySelector("p").innerHTML = html`<span class="error-text">${error.message}</span>`;
    return;
  }
  const [row] = body.units;
  const back = pageUrl.image(imageId, { model: modelId, layer });
  card.innerHTML = html`<h2>On your image</h2>
    <div class="on-image-body">
      <a href="${back}" title="Back to the image"><canvas width="160" height="160" role="img"
        aria-label="unit ${unit} on image ${imageId}"></canvas></a>
      <dl class="stats">
        <div><dt>image</dt><dd><a href="${back}"><code>${imageId}</code></a></dd></div>
        <div><dt>above</dt><dd>${percentAmong(row.percentile, body.compared)} of ${comparedWith(body)} in the dataset</dd></div>
        <div><dt>rank on this image</dt><dd>${row.rank} of ${body.units_total} units</dd></div>
        <div><dt>max here / over the dataset</dt><dd>${row.spatial_max.toFixed(2)} / ${row.max_max.toFixed(2)}</dd></div>
        <div><dt>mean here (z)</dt><dd>${row.spatial_mean.toFixed(3)} (${row.z.toFixed(1)})</dd></div>
      </dl>
    </div>
    <p class="muted small">By spatial mean against the <code>${body.dataset}</code> images; drawn from 0 to the unit's
      maximum over the dataset, like the gallery below${overDatasetMax(row.spatial_max, row.max_max) ? " (this image goes over it: the map is clipped)" : ""}.
      ${coarseRankingNote(body.compared)}</p>`;
  const canvas = card.querySelector("canvas");
  try {
    const picture = await loadImage(apiUrl.imageFile(imageId, modelId));
    if (signal.aborted) return;
    drawHeatmap(canvas, picture, mapAt(decodeMaps(body.maps), 0),
      { low: 0, high: Math.max(row.max_max, 1e-6), opacity });
    card.classList.add("is-drawn");
  } catch {
    canvas.classList.add("is-missing");
  }
}
