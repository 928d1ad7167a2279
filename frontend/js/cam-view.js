// The image page's state, pure: the CAM view parsed from and written back to the query string (methods,
// target class, colormap, opacity, ReLU, faithfulness metrics), what a new image keeps of it, which layer
// the page shows and how its picker groups the layers, and when a map has nothing to show.

import { COLORMAPS } from "./colormaps.js";
const DEFAULT_OPACITY = 0.6;

/** The view a query asks for, given the server's methods ([{ id, default }], /api/methods): unknown method ids
 *  are dropped, so an old link still opens; no `methods` at all gives the server's default ones. */
export function camViewState(query, registry) {
  const methodIds = registry.map((m) => m.id);
  const asked = (query.methods ?? "").split(",").map((id) => id.trim()).filter((id) => methodIds.includes(id));
  const methods = [...new Set(query.methods === undefined ? registry.filter((m) => m.default).map((m) => m.id) : asked)];
  const target = /^\d+$/.test(query.target ?? "") ? Number(query.target) : null;
  const opacity = Number(query.opacity);
  return {
    methods,
    target,
    colormap: COLORMAPS.includes(query.cmap) ? query.cmap : "viridis",
    opacity: query.opacity !== undefined && Number.isFinite(opacity) ? Math.min(Math.max(opacity, 0), 1) : DEFAULT_OPACITY,
    relu: query.relu !== "0",
    metrics: query.metrics === "1",
  };
}

/** What a link asked for that the page cannot show, each in words with what it shows instead (empty when it
 *  shows everything asked). `shown`: { model, layer, methodIds (the server's), target, classes, dataset }. */
export function unmetRequests(query, shown) {
  const unmet = [];
  if (query.model && query.model !== shown.model) unmet.push(`model “${query.model}”: not a ready model here, so ${shown.model}`);
  if (query.layer && query.layer !== shown.layer) {
    unmet.push(`layer “${query.layer}”: ${shown.model} has none, so ${shown.layer ?? "no layer"}`);
  }
  const unknown = (query.methods ?? "").split(",").map((id) => id.trim()).filter((id) => id && !shown.methodIds.includes(id));
  if (unknown.length) {
    const [noun, not] = unknown.length > 1 ? ["methods", "not methods"] : ["method", "not a method"];
    unmet.push(`${noun} ${unknown.map((id) => `“${id}”`).join(", ")}: ${not} of this server`);
  }
  if (query.target && Number(query.target) !== shown.target) {  // "05" is class 5; "-2" and "x" are none
    unmet.push(`class “${query.target}”: ${shown.model} has classes 0 to ${shown.classes - 1}, so its top prediction`);
  }
  if (query.dataset && query.dataset !== shown.dataset) {
    unmet.push(`dataset “${query.dataset}”: ${shown.model} has no atlas on it, so ${shown.dataset ? `“${shown.dataset}”` : "none"}`);
  }
  return unmet;
}

/** The query entries of a CAM view (defaults left out, except the methods, which a link always names). */
export function camQuery(state) {
  return {
    methods: state.methods.join(","),
    target: state.target ?? "",
    cmap: state.colormap === "viridis" ? "" : state.colormap,
    opacity: state.opacity === DEFAULT_OPACITY ? "" : state.opacity,
    relu: state.relu ? "" : "0",
    metrics: state.metrics,
  };
}

/** The query a newly uploaded image opens with, from the page's: the class explained and the metrics belong
 *  to the previous image (class 7 of a shape is nothing of a car's), so the new one starts from its own top
 *  prediction with the metrics off; the model, layer, methods and how maps are drawn carry over. */
export function newImageQuery(query) {
  const { target: _target, metrics: _metrics, ...kept } = query;
  return kept;
}

/** After ReLU a map with no positive value is all zero: drawn, it would look like an empty image. */
export function hasNothingPositive(shown, relu) {
  return relu && shown.raw.range[1] <= 0;
}

/**
 * The layer the page shows and its picker's groups. `layers`: the model's (name, default), in model order;
 * `atlas`: the atlas the page ranks units against ({ dataset, layers }), or null. Indexed layers come first
 * (units that fire are ranked there, and unit pages exist); without an atlas the default selection does.
 * The layer asked for wins when the model has it; else the deepest layer of the first group.
 */
export function layerChoice(layers, atlas, asked) {
  const indexed = new Set(atlas?.layers ?? []);
  const primary = layers.filter((l) => (indexed.size ? indexed.has(l.name) : l.default)).map((l) => l.name);
  const others = layers.map((l) => l.name).filter((name) => !primary.includes(name));
  const groups = [
    { label: indexed.size ? `Indexed in the ${atlas.dataset} atlas` : "Default selection", names: primary, primary: true },
    { label: indexed.size ? "Not indexed: maps only" : "Other layers", names: others, primary: false },
  ].filter((group) => group.names.length);
  const layer = layers.some((l) => l.name === asked) ? asked : (primary.at(-1) ?? others.at(-1));
  return { layer, groups, indexed: indexed.has(layer) };
}
