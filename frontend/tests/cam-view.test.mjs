// The image page's CAM view state: parsed from a query, written back, defaults and bad values.
import assert from "node:assert/strict";
import { test } from "node:test";

import { camQuery, camViewState, DEFAULT_METHODS } from "../js/cam-view.js";
import { withQuery } from "../js/urls.js";

const IDS = ["gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "guided-gradcam"];

test("no query: the default methods, the top class, viridis at 0.6, no metrics", () => {
  assert.deepEqual(camViewState({}, IDS),
    { methods: DEFAULT_METHODS, target: null, colormap: "viridis", opacity: 0.6, metrics: false });
});

test("a view round-trips through its query", () => {
  const state = { methods: ["scorecam", "guided-gradcam"], target: 3, colormap: "turbo", opacity: 0.25, metrics: true };
  const url = withQuery("/image/demo:1", camQuery(state));
  assert.equal(url, "/image/demo:1?cmap=turbo&methods=scorecam%2Cguided-gradcam&metrics=1&opacity=0.25&target=3");
  const query = Object.fromEntries(new URL(url, "http://x").searchParams);
  assert.deepEqual(camViewState(query, IDS), state);
});

test("bad values fall back: unknown methods dropped, duplicates once, target must be a class index", () => {
  const state = camViewState({ methods: "bogus,layercam,layercam", target: "-2", cmap: "rainbow", opacity: "7" }, IDS);
  assert.deepEqual(state, { methods: ["layercam"], target: null, colormap: "viridis", opacity: 1, metrics: false });
  assert.deepEqual(camViewState({ methods: "" }, IDS).methods, []);
});
