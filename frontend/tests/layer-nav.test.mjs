// Moving between layers and units, and what a layer is: the pure half of the layer bar and the model page.
import assert from "node:assert/strict";
import { test } from "node:test";

import { describeLayer, indexedOrder, namingExample, neighbourLayers, parseUnitJump } from "../js/layer-nav.js";

// ShapesCNN's modules as the API lists them (children before the block that holds them).
const LAYERS = [
  ["stem.0", "Conv2d"], ["stem.1", "BatchNorm2d"], ["stem.2", "ReLU"], ["stem", "Sequential", true],
  ["block3.0", "Conv2d"], ["block3.1", "BatchNorm2d"], ["block3.2", "ReLU", true], ["block3.3", "Conv2d"],
  ["block3.4", "BatchNorm2d"], ["block3.5", "ReLU"], ["block3", "Sequential", true], ["pool3", "MaxPool2d"],
  ["features.1.block.0", "Conv2dNormActivation"], ["features.1.block", "Sequential"], ["features.1", "InvertedResidual"],
].map(([name, type, isDefault = false]) => ({ name, type, default: isDefault }));

test("previous and next layer, none past either end", () => {
  const order = ["stem", "block3.2", "block3"];
  assert.deepEqual(neighbourLayers(order, "block3.2"), { previous: "stem", next: "block3" });
  assert.deepEqual(neighbourLayers(order, "stem"), { previous: null, next: "block3.2" });
  assert.deepEqual(neighbourLayers(order, "block3"), { previous: "block3.2", next: null });
  assert.deepEqual(neighbourLayers(order, "pool3"), { previous: null, next: null });
});

test("the layers to step through: the shown atlas's, in the model's order; the default ones without an atlas", () => {
  const atlases = [{ dataset: "other", layers: ["stem"] }, { dataset: "demo", layers: ["block3", "stem", "block3.2"] }];
  assert.deepEqual(indexedOrder(LAYERS, atlases, "demo"), ["stem", "block3.2", "block3"]);
  assert.deepEqual(indexedOrder(LAYERS, atlases, "missing"), ["stem"]);
  assert.deepEqual(indexedOrder(LAYERS, [], "demo"), ["stem", "block3.2", "block3"]);
});

test("going to a unit: a number in range, or another indexed layer's unit; anything else says what to type", () => {
  const here = { layer: "block3", total: 96, layers: ["stem", "block3"] };
  assert.deepEqual(parseUnitJump(" 47 ", here), { layer: "block3", unit: 47 });
  assert.deepEqual(parseUnitJump("#0", here), { layer: "block3", unit: 0 });
  assert.deepEqual(parseUnitJump("stem:3", here), { layer: "stem", unit: 3 });
  assert.deepEqual(parseUnitJump("block3:95", here), { layer: "block3", unit: 95 });
  assert.equal(parseUnitJump("96", here).error, "No unit 96: block3 has units 0 to 95.");
  assert.equal(parseUnitJump("", here).error, "Type a unit number from 0 to 95.");
  assert.equal(parseUnitJump("-1", here).error, '"-1" is not a unit number: type one from 0 to 95.');
  assert.equal(parseUnitJump("4.5", here).error, '"4.5" is not a unit number: type one from 0 to 95.');
  assert.equal(parseUnitJump("pool3:1", here).error, 'No indexed layer "pool3" in this model.');
});

const text = (parts) => parts.map((part) => (typeof part === "string" ? part : `\`${part.code}\``)).join("");

test("a module inside a block says where it sits, a Sequential block says it is its last module's output", () => {
  assert.equal(text(describeLayer(LAYERS, "block3.2")),
    "in `block3`, after `block3.1` (BatchNorm2d); after the activation: what the next layer reads");
  assert.equal(text(describeLayer(LAYERS, "block3")),
    "the whole block's output: the same values as its last module, `block3.5` (ReLU)");
  assert.equal(text(describeLayer(LAYERS, "block3.0")), "in `block3`, its first module; signed values, before the activation");
  // A residual block's output is not its last module's: only where it holds is it said.
  assert.equal(text(describeLayer(LAYERS, "features.1")), "the whole block's output: what its forward returns (in a "
    + "residual block, after the skip connection is added), not any one of its modules' output");
  assert.equal(text(describeLayer(LAYERS, "features.1.block")),
    "in `features.1`, its first module; the whole block's output: the same values as its last module, `features.1.block.0` (Conv2dNormActivation)");
  assert.deepEqual(describeLayer(LAYERS, "pool3"), []);
  assert.deepEqual(describeLayer(LAYERS, "nope"), []);
});

test("the naming is explained with a default module and its default block when the model has them", () => {
  const { child, parent } = namingExample(LAYERS);
  assert.deepEqual([child.name, parent.name], ["block3.2", "block3"]);
  assert.deepEqual(namingExample(LAYERS.filter((l) => l.name !== "block3.2")).child.name, "stem.0");
  assert.equal(namingExample([{ name: "conv", type: "Conv2d" }]), null);
});
