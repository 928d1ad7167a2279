import assert from "node:assert/strict";
import { test } from "node:test";

import { taskQueue } from "../js/task-queue.js";

const later = () => {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
};

test("at most `limit` tasks run, in the order queued; one no longer wanted is skipped", async () => {
  const queue = taskQueue(2);
  const started = [];
  const gates = [later(), later(), later(), later()];
  let wanted = true;
  const results = [0, 1, 2, 3].map((i) => queue(() => { started.push(i); return gates[i].promise; },
    i === 2 ? () => wanted : undefined));
  await Promise.resolve();
  assert.deepEqual(started, [0, 1]);
  assert.deepEqual(queue.counts(), { queued: 4, finished: 0, running: 2 });
  wanted = false;  // task 2 scrolled away before its turn
  gates[1].resolve("b");
  assert.equal(await results[1], "b");
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(started, [0, 1, 3]);
  assert.equal(await results[2], null);
  gates[0].resolve("a");
  gates[3].resolve("d");
  assert.deepEqual(await Promise.all([results[0], results[3]]), ["a", "d"]);
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(queue.counts(), { queued: 3, finished: 3, running: 0 });
});

test("a task that fails rejects its own promise and the queue goes on", async () => {
  const queue = taskQueue(1);
  const failed = queue(() => Promise.reject(new Error("no")));
  const next = queue(() => "yes");
  await assert.rejects(failed, /no/);
  assert.equal(await next, "yes");
});

test("a task is counted finished by the time its caller hears of it", async () => {
  const queue = taskQueue(2);
  const counts = await queue(() => "done").then(() => queue.counts());
  assert.deepEqual(counts, { queued: 1, finished: 1, running: 0 });
  const failed = await queue(() => { throw new Error("no"); }).catch(() => queue.counts());
  assert.deepEqual(failed, { queued: 2, finished: 2, running: 0 });
});
