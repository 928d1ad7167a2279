import assert from "node:assert/strict";
import { test } from "node:test";

import { coarseRankingNote, comparedWith, maxAgainstDataset, percentAmong } from "../js/ranking.js";

test("a percentile has no more digits than its dataset can tell apart", () => {
  assert.equal(percentAmong(8 / 9, 9), "89%");
  assert.equal(percentAmong(1, 9), "100%");
  assert.equal(percentAmong(0.9995, 2000), "100.0%");
  assert.equal(percentAmong(0.9975, 2000), "99.8%");
});

test("a dataset image is ranked among the others, and few images are said to rank coarsely", () => {
  assert.equal(comparedWith({ images: 9, compared: 8 }), "the 8 other images");
  assert.equal(comparedWith({ images: 2000, compared: 2000 }), "2,000 images");
  assert.match(coarseRankingNote(9), /steps of 11%/);
  assert.equal(coarseRankingNote(100), "");
});

test("an activation over the dataset's maximum says so", () => {
  assert.equal(maxAgainstDataset(0.37, 0.27), "max 0.37, over the dataset's 0.27");
  assert.equal(maxAgainstDataset(0.2, 0.27), "max 0.20 of 0.27");
  assert.equal(maxAgainstDataset(4.0312, 4.0299), "max 4.03 of 4.03");  // over only past the printed digits
});
