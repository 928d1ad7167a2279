// What a followed request's progress says, and the tokens that name it.
import assert from "node:assert/strict";
import { test } from "node:test";

import { describeProgress, progressToken } from "../js/progress.js";

const METHODS = new Map([
  ["gradcam", { name: "Grad-CAM", extra_forwards: "none" }],
  ["scorecam", { name: "Score-CAM", extra_forwards: "per-channel" }],
  ["ablationcam", { name: "Ablation-CAM", extra_forwards: "per-channel-after-layer" }],
]);

test("each task in words: waiting, a method's batches, scoring; quick steps say nothing", () => {
  const say = (task, done = 0, total = 0) => describeProgress({ task, done, total, seconds: 1 }, METHODS);
  assert.equal(say("waiting"), "waiting for the model (another request is using it)");
  assert.equal(say("scorecam", 128, 500), "Score-CAM: 128 of 500 masked images");
  assert.equal(say("ablationcam", 64, 192), "Ablation-CAM: 64 of 192 channels ablated");
  assert.equal(say("metrics", 1024, 25092), "1,024 of 25,092 images");
  assert.equal(say("maps"), "");
  assert.equal(say("metrics"), "");
  assert.equal(say("an-unknown-task", 1, 2), "");
});

test("tokens are 32 hex digits, different each time, and match the server's pattern", () => {
  const tokens = new Set(Array.from({ length: 100 }, progressToken));
  assert.equal(tokens.size, 100);
  for (const token of tokens) assert.match(token, /^[A-Za-z0-9_-]{8,64}$/);
  for (const token of tokens) assert.match(token, /^[0-9a-f]{32}$/);
});
