// Region outlines: marching squares on a map, after the same bilinear upsampling the canvas applies.
import assert from "node:assert/strict";
import { test } from "node:test";

import { contourSegments, upsample } from "../js/contours.js";

const map = (h, w, values) => ({ h, w, values: Float32Array.from(values) });

test("one peak is outlined by a closed diamond through the crossing points", () => {
  const segments = contourSegments(map(3, 3, [0, 0, 0, 0, 1, 0, 0, 0, 0]), 0.5);
  assert.equal(segments.length, 4);
  const points = new Set(segments.flatMap(([x0, y0, x1, y1]) => [`${x0},${y0}`, `${x1},${y1}`]));
  // Halfway between the centre (1.5, 1.5) and each neighbour's centre.
  assert.deepEqual([...points].sort(), ["1,1.5", "1.5,1", "1.5,2", "2,1.5"]);
  // Closed: every end point is shared by exactly two segments.
  const ends = segments.flatMap(([x0, y0, x1, y1]) => [`${x0},${y0}`, `${x1},${y1}`]);
  for (const point of points) assert.equal(ends.filter((p) => p === point).length, 2);
});

test("crossings are interpolated along each edge", () => {
  const [[x0, y0, x1, y1]] = contourSegments(map(2, 2, [0, 1, 0, 1]), 0.25);
  assert.deepEqual([x0, y0, x1, y1].sort(), [0.5, 0.75, 0.75, 1.5].sort());
});

test("nothing to outline when no value, or every value, reaches the level", () => {
  assert.deepEqual(contourSegments(map(2, 2, [0, 0, 0, 0]), 0.5), []);
  assert.deepEqual(contourSegments(map(2, 2, [1, 1, 1, 1]), 0.5), []);
});

test("saddles follow the cell's mean: joined through a high centre, split around a low one", () => {
  const joined = contourSegments(map(2, 2, [1, 0, 0, 1]), 0.4);  // mean 0.5: the two highs connect
  const split = contourSegments(map(2, 2, [1, 0, 0, 1]), 0.6);   // mean 0.5: each high is its own island
  assert.equal(joined.length, 2);
  assert.equal(split.length, 2);
  // Joined: the segments cut off the low corners (top-right and bottom-left).
  const cutsTopRight = (segments) => segments.some(([x0, y0, x1, y1]) => Math.min(y0, y1) === 0.5 && Math.max(x0, x1) === 1.5);
  assert.ok(cutsTopRight(joined));
  assert.ok(!cutsTopRight(split));
});

test("upsampling samples at cell centres, as the canvas does, and keeps the edges", () => {
  const up = upsample(map(1, 2, [0, 1]), 2);
  assert.deepEqual([up.h, up.w], [2, 4]);
  assert.deepEqual([...up.values], [0, 0.25, 0.75, 1, 0, 0.25, 0.75, 1]);
  assert.equal(upsample(map(1, 2, [0, 1]), 1).w, 2);
});
