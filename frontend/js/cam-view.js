// The image page's CAM view as URL state: which methods, which target class, colormap, opacity and
// whether faithfulness metrics are shown. Pure: parsed from and written back to the query string.

import { COLORMAPS } from "./colormaps.js";

// Three maps from one forward and one backward pass: cheap on any model, and different enough to compare.
export const DEFAULT_METHODS = ["gradcam", "gradcampp", "layercam"];
const DEFAULT_OPACITY = 0.6;

/** The view a query asks for; unknown method ids are dropped, so an old link still opens. */
export function camViewState(query, methodIds) {
  const asked = (query.methods ?? "").split(",").map((id) => id.trim()).filter((id) => methodIds.includes(id));
  const methods = [...new Set(query.methods === undefined ? DEFAULT_METHODS.filter((id) => methodIds.includes(id)) : asked)];
  const target = /^\d+$/.test(query.target ?? "") ? Number(query.target) : null;
  const opacity = Number(query.opacity);
  return {
    methods,
    target,
    colormap: COLORMAPS.includes(query.cmap) ? query.cmap : "viridis",
    opacity: query.opacity !== undefined && Number.isFinite(opacity) ? Math.min(Math.max(opacity, 0), 1) : DEFAULT_OPACITY,
    metrics: query.metrics === "1",
  };
}

/** The query entries of a CAM view (defaults left out, except the methods, which a link always names). */
export function camQuery(state) {
  return {
    methods: state.methods.join(","),
    target: state.target ?? "",
    cmap: state.colormap === "viridis" ? "" : state.colormap,
    opacity: state.opacity === DEFAULT_OPACITY ? "" : state.opacity,
    metrics: state.metrics,
  };
}
