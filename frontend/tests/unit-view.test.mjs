// The unit page's view options from its URL: links written before the outline and the stronger default
// opacity keep working, and every state survives a round trip through its own link.
import assert from "node:assert/strict";
import { test } from "node:test";

import { neighbourUnits, sameUnitPage, unitQuery, unitViewState, visualizationCaption } from "../js/unit-view.js";
import { pageUrl } from "../js/urls.js";

// The heatmap's options (the state also names the dataset, which has tests of its own).
const view = (query) => {
  const { colormap, opacity, mask, crop, outline } = unitViewState(query);
  return { colormap, opacity, mask, crop, outline };
};

test("an old link keeps its options; the new defaults apply only where the link names none", () => {
  assert.deepEqual(view({ cmap: "inferno", opacity: "0.5", mask: "1" }),
    { colormap: "inferno", opacity: 0.5, mask: true, crop: false, outline: true });
  assert.deepEqual(view({}), { colormap: "viridis", opacity: 0.75, mask: false, crop: false, outline: true });
  assert.deepEqual(view({ outline: "0", opacity: "7", cmap: "nope" }),
    { colormap: "viridis", opacity: 1, mask: false, crop: false, outline: false });
});

test("a state's link gives the state back, with defaults left out of it", () => {
  for (const query of [{}, { cmap: "turbo", opacity: "0.3", crop: "1", outline: "0" }, { opacity: "0" },
    { fv: "facets" }, { fv: "negative" }]) {
    const state = unitViewState(query);
    const search = pageUrl.unit("m", "l", 3, unitQuery(state)).split("?")[1] ?? "";
    assert.deepEqual(unitViewState(Object.fromEntries(new URLSearchParams(search))), state);
  }
  assert.deepEqual(unitQuery(unitViewState({})), {});
  const full = { cmap: "gray", opacity: "0.2", mask: "1", crop: "1", outline: "0", dataset: "demo", image: "up1" };
  assert.equal(pageUrl.unit("m", "l", 3, unitQuery(unitViewState(full))),
    "/m/m/l/3?cmap=gray&crop=1&dataset=demo&image=up1&mask=1&opacity=0.2&outline=0");
});

test("the visualisation panel's view is kept in the link; an unknown one is the default", () => {
  assert.equal(unitViewState({ fv: "facets" }).drive, "facets");
  assert.equal(unitViewState({ fv: "negative" }).drive, "negative");
  assert.equal(unitViewState({ fv: "nonsense" }).drive, null);
  assert.equal(unitViewState({}).drive, null);
  assert.equal(pageUrl.unit("m", "l", 3, unitQuery(unitViewState({ fv: "negative", dataset: "d" }))), "/m/m/l/3?dataset=d&fv=negative");
});

test("the link the server writes (app/api/links.py: unit_page) opens the default view of its dataset", () => {
  const state = unitViewState({ dataset: "demo" });
  assert.deepEqual(state, { colormap: "viridis", opacity: 0.75, mask: false, crop: false, outline: true,
    dataset: "demo", image: null, kind: "channel", drive: null, concept: false });
  assert.equal(pageUrl.unit("shapes-cnn", "block3", 5, unitQuery(state)), "/m/shapes-cnn/block3/5?dataset=demo");
});

test("the label concept's pixels are kept in the link", () => {
  const state = unitViewState({ dataset: "demo", concept: "1" });
  assert.equal(state.concept, true);
  assert.equal(pageUrl.unit("shapes-cnn", "block4", 167, unitQuery(state)), "/m/shapes-cnn/block4/167?concept=1&dataset=demo");
});

test("the arrow keys stop at either end of the layer", () => {
  assert.deepEqual(neighbourUnits(0, 3), { previous: null, next: 1 });
  assert.deepEqual(neighbourUnits(1, 3), { previous: 0, next: 2 });
  assert.deepEqual(neighbourUnits(2, 3), { previous: 1, next: null });
  assert.deepEqual(neighbourUnits(0, 1), { previous: null, next: null });
});

test("another unit of the same layer, atlas and image is drawn in place; anything else is a new page", () => {
  const shown = { model: "m", layer: "l", dataset: "demo", image: null };
  const route = (params, query) => ({ view: "unit", params: { model: "m", layer: "l", unit: 4, ...params }, query });
  assert.equal(sameUnitPage(shown, route({}, { dataset: "demo", cmap: "gray" })), true);
  assert.equal(sameUnitPage(shown, route({ unit: 5 }, { dataset: "demo" })), true);
  assert.equal(sameUnitPage(shown, route({}, {})), false);  // no dataset: the default, named once loaded
  assert.equal(sameUnitPage(shown, route({}, { dataset: "imagenet" })), false);
  assert.equal(sameUnitPage(shown, route({ layer: "k" }, { dataset: "demo" })), false);
  assert.equal(sameUnitPage(shown, route({ model: "n" }, { dataset: "demo" })), false);
  assert.equal(sameUnitPage(shown, route({}, { dataset: "demo", image: "up1" })), false);
  assert.equal(sameUnitPage(shown, { view: "layer", params: { model: "m", layer: "l" }, query: { dataset: "demo" } }), false);
});

test("the kind rides along: parsed from the route's query, kept in every link, and part of what a step keeps", () => {
  const state = unitViewState({ dataset: "demo", kind: "feature" });
  assert.equal(state.kind, "feature");
  assert.equal(pageUrl.unit("m", "l", 3, unitQuery(state)), "/m/m/l/feature/3?dataset=demo");
  const shown = { model: "m", layer: "l", kind: "feature", dataset: "demo", image: null };
  const route = (query) => ({ view: "unit", params: { model: "m", layer: "l", unit: 4 }, query });
  assert.equal(sameUnitPage(shown, route({ dataset: "demo", kind: "feature" })), true);
  assert.equal(sameUnitPage(shown, route({ dataset: "demo" })), false);  // a channel: another page
});

test("the visualisation's caption says what the image does, and when a negative one only silences the unit", () => {
  const found = { activation: 6.912, dataset_best: 0.83, steps: 4, size: 112 };
  assert.equal(visualizationCaption(found, false),
    "reaches 6.91 (mean activation); the dataset's best image: 0.83 · 4 steps, 112 px");
  assert.equal(visualizationCaption({ ...found, activation: -1.5 }, true), "lowers it to -1.50 (mean activation) · 4 steps, 112 px");
  assert.equal(visualizationCaption({ ...found, activation: 0 }, true),
    "silences it (mean activation 0.00): any image it does not respond to does as much · 4 steps, 112 px");
  assert.equal(visualizationCaption({ ...found, dataset_best: null }, false), "reaches 6.91 (mean activation) · 4 steps, 112 px");
});
