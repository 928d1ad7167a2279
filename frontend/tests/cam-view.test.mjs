// The image page's CAM view state: parsed from a query, written back, defaults and bad values.
import assert from "node:assert/strict";
import { test } from "node:test";

import { camQuery, camViewState, hasNothingPositive, layerChoice, newImageQuery, unmetRequests } from "../js/cam-view.js";
import { withQuery } from "../js/urls.js";

// The server's methods (a stub of /api/methods: ids, and which ones the page opens with).
const DEFAULTS = ["gradcam", "gradcampp", "layercam"];
const IDS = ["gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "guided-gradcam"].map((id) => ({
  id, default: DEFAULTS.includes(id) }));

test("no query: the default methods, the top class, viridis at 0.6, ReLU, no metrics", () => {
  assert.deepEqual(camViewState({}, IDS),
    { methods: DEFAULTS, target: null, colormap: "viridis", opacity: 0.6, relu: true, metrics: false });
});

test("a view round-trips through its query", () => {
  const state = { methods: ["scorecam", "guided-gradcam"], target: 3, colormap: "turbo", opacity: 0.25, relu: false,
    metrics: true };
  const url = withQuery("/image/demo:1", camQuery(state));
  assert.equal(url, "/image/demo:1?cmap=turbo&methods=scorecam%2Cguided-gradcam&metrics=1&opacity=0.25&relu=0&target=3");
  const query = Object.fromEntries(new URL(url, "http://x").searchParams);
  assert.deepEqual(camViewState(query, IDS), state);
});

test("bad values fall back: unknown methods dropped, duplicates once, target must be a class index", () => {
  const state = camViewState({ methods: "bogus,layercam,layercam", target: "-2", cmap: "rainbow", opacity: "7" }, IDS);
  assert.deepEqual(state, { methods: ["layercam"], target: null, colormap: "viridis", opacity: 1, relu: true, metrics: false });
  assert.deepEqual(camViewState({ methods: "" }, IDS).methods, []);
});

test("a new image starts from its own top prediction with metrics off; the rest of the view carries over", () => {
  const page = { model: "shapes-cnn", layer: "block4", ...camQuery({ methods: ["gradcam", "scorecam"], target: 7,
    colormap: "turbo", opacity: 0.8, relu: false, metrics: true }) };
  const next = newImageQuery(page);
  assert.equal(withQuery("/image/abc", next), "/image/abc?cmap=turbo&layer=block4&methods=gradcam%2Cscorecam&model=shapes-cnn&opacity=0.8&relu=0");
  const opened = camViewState(Object.fromEntries(new URL(withQuery("/image/abc", next), "http://x").searchParams), IDS);
  assert.equal(opened.target, null);
  assert.equal(opened.metrics, false);
  assert.deepEqual(page.target, 7);  // the page's own query is left alone
});

test("a map with no positive value has nothing to show after ReLU, and shows its signed values without", () => {
  const map = (low, high) => ({ raw: { range: [low, high] } });
  assert.equal(hasNothingPositive(map(-0.001, -0.0002), true), true);
  assert.equal(hasNothingPositive(map(-1, 0), true), true);
  assert.equal(hasNothingPositive(map(-1, 0.01), true), false);
  assert.equal(hasNothingPositive(map(-0.001, -0.0002), false), false);
});

const MOBILENET = [
  ...Array.from({ length: 12 }, (_, i) => [{ name: `features.${i}.0`, default: false }, { name: `features.${i}`, default: true }]).flat(),
  { name: "features", default: true }, { name: "avgpool", default: false },
];

test("the layer picker offers the indexed layers first, the others apart; the deepest indexed by default", () => {
  const atlas = { dataset: "demo", layers: ["features.3", "features.11", "features"] };
  const choice = layerChoice(MOBILENET, atlas, undefined);
  assert.equal(choice.layer, "features");
  assert.equal(choice.indexed, true);
  assert.deepEqual(choice.groups.map((g) => [g.label, g.names.length, g.primary]),
    [["Indexed in the demo atlas", 3, true], ["Not indexed: maps only", MOBILENET.length - 3, false]]);
  assert.deepEqual(choice.groups[0].names, ["features.3", "features.11", "features"]);  // the model's order
  const asked = layerChoice(MOBILENET, atlas, "features.4.0");
  assert.equal(asked.layer, "features.4.0");
  assert.equal(asked.indexed, false);
  assert.equal(layerChoice(MOBILENET, atlas, "no-such-layer").layer, "features");
});

test("without an atlas the default selection comes first", () => {
  const choice = layerChoice(MOBILENET, null, undefined);
  assert.equal(choice.layer, "features");
  assert.equal(choice.indexed, false);
  assert.deepEqual(choice.groups.map((g) => [g.label, g.names.length]), [["Default selection", 13], ["Other layers", 13]]);
  assert.equal(layerChoice(MOBILENET, { dataset: "demo", layers: [] }, undefined).groups[0].label, "Default selection");
});

test("a link's requests the page cannot meet are each named, with what is shown instead", () => {
  const shown = { model: "shapes-cnn", layer: "block4", methodIds: IDS.map((m) => m.id), target: null, classes: 8,
    dataset: "demo" };
  assert.deepEqual(unmetRequests({ model: "shapes-cnn", layer: "block4", methods: "gradcam", dataset: "demo" }, shown), []);
  assert.deepEqual(unmetRequests({}, shown), []);  // nothing asked: the defaults are no surprise
  assert.deepEqual(unmetRequests({ model: "resnet", layer: "layer4", methods: "gradcam,bogus,nope", target: "99",
    dataset: "imagenet" }, shown), [
    "model “resnet”: not a ready model here, so shapes-cnn",
    "layer “layer4”: shapes-cnn has none, so block4",
    "methods “bogus”, “nope”: not methods of this server",
    "class “99”: shapes-cnn has classes 0 to 7, so its top prediction",
    "dataset “imagenet”: shapes-cnn has no atlas on it, so “demo”",
  ]);
  assert.deepEqual(unmetRequests({ target: "3" }, { ...shown, target: 3 }), []);
  assert.deepEqual(unmetRequests({ target: "05" }, { ...shown, target: 5 }), []);  // what camViewState reads
  assert.deepEqual(unmetRequests({ methods: "gradcam,bogus" }, shown), ["method “bogus”: not a method of this server"]);
});
