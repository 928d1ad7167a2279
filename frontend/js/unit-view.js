// The unit page's state, pure: its URL query parsed (view options with defaults) and written back (defaults
// left out, so the link the server writes, app/api/links.py's `?dataset=...`, is the default view); which
// units the arrow keys step to; and when a new URL is the same page with another unit, drawn in place.

import { COLORMAPS } from "./colormaps.js";
import { CHANNEL } from "./urls.js";

// Heatmaps that stay visible on any image: strong at the peak, clear where the unit is quiet (opacity
// follows the value), and the region above the unit's 99.5% quantile outlined. A link that names an
// opacity keeps it; `outline=0` turns the outline off.
export const UNIT_DEFAULTS = Object.freeze({ colormap: "viridis", opacity: 0.75, mask: false, crop: false, outline: true });

// What the feature-visualisation panel shows besides the image that drives the unit most (null).
export const DRIVE_VIEWS = Object.freeze(["facets", "negative"]);

export function unitViewState(query) {
  const opacity = Number(query.opacity);
  return {
    colormap: COLORMAPS.includes(query.cmap) ? query.cmap : UNIT_DEFAULTS.colormap,
    opacity: Number.isFinite(opacity) && query.opacity !== undefined ? Math.min(Math.max(opacity, 0), 1)
      : UNIT_DEFAULTS.opacity,
    mask: query.mask === "1",
    crop: query.crop === "1",
    outline: query.outline !== "0",
    dataset: query.dataset || null, // the atlas shown; null: the model's default, named once it is known
    image: query.image || null, // the image page the user came from: the unit is shown on it too
    kind: query.kind || CHANNEL, // of the unit (from the page's path, urls.js)
    drive: DRIVE_VIEWS.includes(query.fv) ? query.fv : null, // the visualisation panel's view
    concept: query.concept === "1", // the label concept's pixels tinted over the top images
  };
}

/** The unit page's URL query: the view options that differ from the defaults, the dataset and the image. */
export function unitQuery(state) {
  const query = {};
  if (state.colormap !== UNIT_DEFAULTS.colormap) query.cmap = state.colormap;
  if (state.opacity !== UNIT_DEFAULTS.opacity) query.opacity = state.opacity;
  if (state.mask) query.mask = true;
  if (state.crop) query.crop = true;
  if (!state.outline) query.outline = "0";
  if (state.dataset) query.dataset = state.dataset;
  if (state.image) query.image = state.image;
  if (state.kind && state.kind !== CHANNEL) query.kind = state.kind;
  if (state.drive) query.fv = state.drive;
  if (state.concept) query.concept = true;
  return query;
}

/** The units either side of `unit` in a layer of `total`: null past either end. */
export function neighbourUnits(unit, total) {
  return { previous: unit > 0 ? unit - 1 : null, next: unit < total - 1 ? unit + 1 : null };
}

/** Whether the unit page showing `shown` ({ model, layer, kind, dataset, image }: the dataset named once known)
 *  can draw `route` in place: a unit of the same layer, kind, atlas and image, its view options possibly changed. */
export function sameUnitPage(shown, route) {
  if (route.view !== "unit") return false;
  const asked = unitViewState(route.query);
  return route.params.model === shown.model && route.params.layer === shown.layer
    && asked.kind === (shown.kind ?? CHANNEL)
    && asked.dataset !== null && asked.dataset === shown.dataset && asked.image === shown.image;
}

/** The visualisation's caption: what the image does to the unit (`found`: the server's answer). A negative image
 *  that only silences the unit (0 everywhere, as low as a unit after a ReLU goes) is said to be so: many images
 *  do that, so it tells little. */
export function visualizationCaption(found, negative) {
  const reached = found.activation.toFixed(2);
  const effect = !negative ? `reaches ${reached} (mean activation)`
    : Math.abs(found.activation) < 5e-3 ? "silences it (mean activation 0.00): any image it does not respond to does as much"
      : `lowers it to ${reached} (mean activation)`;
  const best = found.dataset_best !== null && !negative ? `; the dataset's best image: ${found.dataset_best.toFixed(2)}` : "";
  return `${effect}${best} · ${found.steps} steps, ${found.size} px`;
}
