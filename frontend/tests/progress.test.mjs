// What a followed request's progress says, and the tokens that name it.
import assert from "node:assert/strict";
import { test } from "node:test";

import { describeProgress, followProgress, progressToken } from "../js/progress.js";

// Progress answers carry the server's words for their task (app/studio/progress.py `describe_task`, tested
// in tests/test_progress_words.py); the page adds how long is left once the pace is known.
const at = (note, done, total, taskSeconds) => ({ task: "scorecam", done, total, note, seconds: taskSeconds + 1,
  task_seconds: taskSeconds });

test("a task in the server's words; a quick task (no words) says nothing", () => {
  assert.equal(describeProgress({ task: "waiting", done: 0, total: 0, seconds: 1, task_seconds: 1,
    note: "waiting for the model (another request is using it)" }), "waiting for the model (another request is using it)");
  assert.equal(describeProgress({ task: "maps", done: 0, total: 0, seconds: 1, task_seconds: 1, note: "" }), "");
  assert.equal(describeProgress({ task: "maps", done: 0, total: 0, seconds: 1, task_seconds: 1 }), "");  // an older server
});

test("past two seconds into a task, its pace so far estimates what is left", () => {
  const say = (done, total, taskSeconds) => describeProgress(at(`Score-CAM: ${done} of ${total} masked images`, done,
    total, taskSeconds));
  assert.equal(say(100, 500, 10), "Score-CAM: 100 of 500 masked images · about 40 s left");
  assert.equal(say(100, 2048, 10), "Score-CAM: 100 of 2048 masked images · about 3 min left");  // 195 s
  assert.equal(say(499, 500, 10), "Score-CAM: 499 of 500 masked images · about 1 s left");
  assert.equal(say(100, 500, 1.5), "Score-CAM: 100 of 500 masked images");  // too early to tell
  assert.equal(say(0, 500, 10), "Score-CAM: 0 of 500 masked images");
  assert.equal(say(500, 500, 10), "Score-CAM: 500 of 500 masked images");
  assert.equal(describeProgress({ task: "scoring", done: 36, total: 72, seconds: 9, task_seconds: 4,
    note: "36 of 72 images" }), "36 of 72 images · about 4 s left");
});

test("tokens are 32 hex digits, different each time, and match the server's pattern", () => {
  const tokens = new Set(Array.from({ length: 100 }, progressToken));
  assert.equal(tokens.size, 100);
  for (const token of tokens) assert.match(token, /^[A-Za-z0-9_-]{8,64}$/);
  for (const token of tokens) assert.match(token, /^[0-9a-f]{32}$/);
});

const answer = (status, body) => ({ ok: status === 200, status, json: async () => body });
const flush = () => new Promise((resolve) => setImmediate(resolve));

test("polls every half second, skips 404s, and stops: nothing reported after stop(), even an answer in flight", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const urls = [];
  const replies = [answer(404, { error: { code: "not_found", message: "not begun" } }),
    answer(200, { task: "scorecam", done: 32, total: 500 })];
  let held = null;
  t.mock.method(globalThis, "fetch", async (url) => {
    urls.push(url);
    return replies.shift() ?? new Promise((resolve) => { held = resolve; });
  });
  const heard = [];
  const stop = followProgress("abcd1234", (found) => heard.push(found.done), new AbortController().signal);
  await flush();
  assert.equal(urls.length, 0);  // the first poll waits half a second: quick requests never poll
  for (const expected of [1, 2, 3]) {
    t.mock.timers.tick(500);
    await flush();
    assert.equal(urls.length, expected);
  }
  assert.deepEqual(urls, Array(3).fill("/api/progress/abcd1234"));
  assert.deepEqual(heard, [32]);  // the 404 was skipped
  stop();
  held(answer(200, { task: "scorecam", done: 64, total: 500 }));  // the third poll answers after stop()
  await flush();
  t.mock.timers.tick(5000);
  await flush();
  assert.deepEqual(heard, [32]);
  assert.equal(urls.length, 3);
});

test("the page's signal stops the polls too", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  let polls = 0;
  t.mock.method(globalThis, "fetch", async () => { polls += 1; return answer(200, { task: "maps", done: 0, total: 0 }); });
  const page = new AbortController();
  followProgress("abcd1234", () => {}, page.signal);
  t.mock.timers.tick(500);
  await flush();
  page.abort();
  t.mock.timers.tick(5000);
  await flush();
  assert.equal(polls, 1);
});
