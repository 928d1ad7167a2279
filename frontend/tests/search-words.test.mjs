import assert from "node:assert/strict";
import { test } from "node:test";

import { describeHit, searchable, unitName } from "../js/search-words.js";

test("a query needs letters, digits or a filter", () => {
  assert.equal(searchable({ q: "  " }), false);
  assert.equal(searchable({ q: "squ" }), true);
  assert.equal(searchable({ q: "", category: "shape" }), true);
  assert.equal(searchable({ q: "", class: "horse" }), true);
});

test("hits in words", () => {
  const base = { layer: "block4", unit: 167, score: 0.1581, label: "shape:square" };
  assert.equal(describeHit({ ...base, field: "label", text: "shape:square square" }), "label: shape:square (IoU 0.16)");
  assert.equal(describeHit({ ...base, field: "class", text: "class ring", score: 0.947 }), "class ring (AUC 0.95)");
  assert.equal(describeHit({ ...base, field: "note", text: "corners" }), "note: corners");
  assert.equal(describeHit({ ...base, field: "unit", text: "block4:167" }), "label: shape:square");
  assert.equal(unitName(base), "block4:167");
  assert.equal(unitName({ ...base, kind: "channel" }), "block4:167");
  assert.equal(unitName({ ...base, kind: "sae-384" }), "block4 sae-384:167");
});
