// The unit page's view options from its URL: links written before the outline and the stronger default
// opacity keep working, and every state survives a round trip through its own link.
import assert from "node:assert/strict";
import { test } from "node:test";

import { stateQuery, unitViewState } from "../js/views/unit.js";

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
  for (const query of [{}, { cmap: "turbo", opacity: "0.3", crop: "1", outline: "0" }, { opacity: "0" }]) {
    const state = unitViewState(query);
    const written = Object.fromEntries(Object.entries(stateQuery(state))
      .filter(([, v]) => v !== "" && v !== false).map(([k, v]) => [k, v === true ? "1" : String(v)]));
    assert.deepEqual(unitViewState(written), state);
  }
  assert.deepEqual(Object.values(stateQuery(unitViewState({}))).filter((v) => v !== "" && v !== false), []);
});
