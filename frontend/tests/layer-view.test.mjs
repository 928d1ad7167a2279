// The layer page's state: defaults, a round trip through its own link, and the server's links.
import assert from "node:assert/strict";
import { test } from "node:test";

import { layerQuery, layerViewState, unitsQuery } from "../js/layer-view.js";
import { apiUrl, pageUrl } from "../js/urls.js";

// The ids /api/statistics lists as sorts (a stub of its answer: the endpoint is the server's to define).
const SORT_IDS = ["unit", "max_max", "max_mean", "mean_mean", "fraction_active", "quantile_995"];

test("a bare link is the default view: by unit index, ascending, each unit on its own scale", () => {
  assert.deepEqual(layerViewState({}, SORT_IDS), { sort: "unit", order: "asc", scale: "unit", show: "images", dataset: null, kind: "channel" });
  assert.deepEqual(layerQuery(layerViewState({}, SORT_IDS)), {});
});

test("unknown values give the defaults: a sort the server does not offer, or no list of sorts at all", () => {
  assert.deepEqual(layerViewState({ sort: "nope", order: "up", scale: "x", dataset: "" }, SORT_IDS),
    { sort: "unit", order: "asc", scale: "unit", show: "images", dataset: null, kind: "channel" });
  assert.equal(layerViewState({ sort: "max_max" }, []).sort, "unit");
});

test("every state's link gives the state back, defaults left out of it", () => {
  for (const query of [{}, { sort: "max_max", order: "desc" }, { scale: "layer", dataset: "demo" },
    { sort: "fraction_active", order: "desc", scale: "layer", dataset: "imagenet" }, { show: "visualizations" }]) {
    const state = layerViewState(query, SORT_IDS);
    assert.deepEqual(layerQuery(state), query);
    const [path, search] = pageUrl.layer("m", "block3", layerQuery(state)).split("?");
    assert.equal(path, "/m/m/block3");
    assert.deepEqual(layerViewState(Object.fromEntries(new URLSearchParams(search)), SORT_IDS), state);
  }
});

test("the link the server writes (app/api/links.py: layer_page) opens the default view of its dataset", () => {
  const server = "/m/shapes-cnn/block3?dataset=demo";
  const state = layerViewState({ dataset: "demo" }, SORT_IDS);
  assert.deepEqual(state, { sort: "unit", order: "asc", scale: "unit", show: "images", dataset: "demo", kind: "channel" });
  assert.equal(pageUrl.layer("shapes-cnn", "block3", layerQuery(state)), server);
});

test("what the grid asks for: a page of units with their maps, in the state's order", () => {
  const state = layerViewState({ sort: "max_max", order: "desc", dataset: "demo" }, SORT_IDS);
  assert.equal(apiUrl.units("m", "l", unitsQuery(state, { limit: 96 })),
    "/api/models/m/layers/l/units?dataset=demo&limit=96&maps=1&order=desc&sort=max_max");
  assert.equal(apiUrl.units("m", "l", unitsQuery({ ...state, dataset: null }, { offset: 192, limit: 96 })),
    "/api/models/m/layers/l/units?limit=96&maps=1&offset=192&order=desc&sort=max_max");
  assert.equal(apiUrl.units("m", "l", unitsQuery({ ...state, show: "visualizations" }, { limit: 96 })),
    "/api/models/m/layers/l/units?dataset=demo&limit=96&maps=1&order=desc&sort=max_max&visualized=1");
});

test("a layer's units of another kind: the kind is in its links and in what the grid asks for", () => {
  const state = layerViewState({ dataset: "demo", kind: "feature", sort: "max_max" }, SORT_IDS);
  assert.equal(pageUrl.layer("m", "l", layerQuery(state)), "/m/m/l/feature?dataset=demo&sort=max_max");
  assert.equal(apiUrl.units("m", "l", unitsQuery(state, { limit: 96 })),
    "/api/models/m/layers/l/units?dataset=demo&kind=feature&limit=96&maps=1&order=asc&sort=max_max");
});

test("the grid's cells show top images, or feature visualisations when the link says so", () => {
  assert.equal(layerViewState({ show: "visualizations" }, SORT_IDS).show, "visualizations");
  assert.equal(layerViewState({ show: "other" }, SORT_IDS).show, "images");
  assert.deepEqual(layerQuery(layerViewState({ show: "visualizations", dataset: "demo" }, SORT_IDS)),
    { show: "visualizations", dataset: "demo" });
});
