// The layer page's state, pure: its URL query parsed (with defaults) and written back (defaults left out,
// so the link the server writes, app/api/links.py's `?dataset=...`, is the default view), and what the
// page asks the API for.

import { CHANNEL, atlasQuery } from "./urls.js";

export const LAYER_DEFAULTS = Object.freeze({ sort: "unit", order: "asc", scale: "unit", show: "images" });

/** The view a query asks for. `sortIds`: the sorts the server offers (/api/statistics); a sort it does not
 *  offer (an old link, or no list at all) gives the default, by unit index. */
export function layerViewState(query, sortIds) {
  return {
    sort: sortIds.includes(query.sort) ? query.sort : LAYER_DEFAULTS.sort,
    order: query.order === "desc" ? "desc" : LAYER_DEFAULTS.order,
    scale: query.scale === "layer" ? "layer" : LAYER_DEFAULTS.scale,
    // What each cell shows: the unit's top image with its map, or its feature visualisation.
    show: query.show === "visualizations" ? "visualizations" : LAYER_DEFAULTS.show,
    dataset: query.dataset || null,  // the atlas shown; null: the model's default, named once it is known
    kind: query.kind || CHANNEL,  // of the units shown (from the page's path, urls.js)
  };
}

/** The layer page's URL query: its view options that differ from the defaults, and the dataset it shows. */
export function layerQuery(state) {
  const query = {};
  for (const key of ["sort", "order", "scale", "show"]) if (state[key] !== LAYER_DEFAULTS[key]) query[key] = state[key];
  if (state.dataset) query.dataset = state.dataset;
  if (state.kind && state.kind !== CHANNEL) query.kind = state.kind;
  return query;
}

/** The API query of a page of the grid's units (with their top maps) in the state's order; showing feature
 *  visualisations, which of them are stored. */
export function unitsQuery(state, { offset = 0, limit }) {
  return { ...atlasQuery(state), sort: state.sort, order: state.order, offset: offset || "", limit, maps: true,
    visualized: state.show === "visualizations" || "" };
}
