// The data layer against a stub server: kept answers, shared requests, aborts, eviction, refresh.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createDataLayer } from "../js/data.js";

/** A stub `fetchJson`: each request waits until the test answers it. */
function stubServer() {
  const requests = [];
  const fetchJson = (url, { signal }) => new Promise((resolve, reject) => {
    const request = { url, signal, answer: resolve, fail: reject };
    requests.push(request);
    signal.addEventListener("abort", () => reject(signal.reason));
  });
  return { requests, fetchJson, urls: () => requests.map((r) => r.url) };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

test("an answer is fetched once: callers at the same time share the request, later ones get the kept answer", async () => {
  const server = stubServer();
  const data = createDataLayer({ fetchJson: server.fetchJson });
  const [a, b] = [data.load("/api/models/x"), data.load("/api/models/x")];
  assert.equal(server.requests.length, 1);
  server.requests[0].answer({ id: "x" });
  assert.deepEqual(await a, { id: "x" });
  assert.equal(await b, await a);
  assert.deepEqual(await data.load("/api/models/x"), { id: "x" });
  assert.deepEqual(data.peek("/api/models/x"), { id: "x" });
  assert.deepEqual(server.urls(), ["/api/models/x"]);
});

test("a caller's abort ends its own wait; the request ends only when nobody waits for it", async () => {
  const server = stubServer();
  const data = createDataLayer({ fetchJson: server.fetchJson });
  const [first, second] = [new AbortController(), new AbortController()];
  const a = data.load("/u", { signal: first.signal });
  const b = data.load("/u", { signal: second.signal });
  first.abort();
  await assert.rejects(a, { name: "AbortError" });
  assert.equal(server.requests[0].signal.aborted, false);  // b still waits
  second.abort();
  await assert.rejects(b, { name: "AbortError" });
  assert.equal(server.requests[0].signal.aborted, true);
  assert.equal(data.pending, 0);
  // The next ask starts over, and an already aborted signal is refused without a request.
  const c = data.load("/u");
  assert.equal(server.requests.length, 2);
  server.requests[1].answer(1);
  assert.equal(await c, 1);
  const gone = new AbortController();
  gone.abort();
  await assert.rejects(data.load("/u", { signal: gone.signal }), { name: "AbortError" });
  await assert.rejects(data.load("/v", { signal: gone.signal }), { name: "AbortError" });
  assert.equal(server.requests.length, 2);
});

test("errors are not kept: the next ask tries again", async () => {
  const server = stubServer();
  const data = createDataLayer({ fetchJson: server.fetchJson });
  const a = data.load("/e");
  server.requests[0].fail(new Error("503"));
  await assert.rejects(a, /503/);
  const b = data.load("/e");
  server.requests[1].answer("ok");
  assert.equal(await b, "ok");
});

test("answers expire after their life, and the least recently used go past the size bound", async () => {
  let clock = 0;
  const server = stubServer();
  const data = createDataLayer({ fetchJson: server.fetchJson, size: 2, now: () => clock });
  const load = async (url, options) => {
    const promise = data.load(url, options);
    await tick();
    server.requests.at(-1).answer(url);
    return promise;
  };
  await load("/short", { life: 1000 });
  clock = 999;
  assert.equal(data.peek("/short"), "/short");
  clock = 1000;
  assert.equal(data.peek("/short"), undefined);
  await load("/a");
  await load("/b");
  await data.load("/a");  // kept, and now more recent than /b
  await load("/c");
  assert.equal(data.size, 2);
  assert.equal(data.peek("/b"), undefined);
  assert.equal(data.peek("/a"), "/a");
  assert.deepEqual(server.urls(), ["/short", "/a", "/b", "/c"]);
});

test("subscribers hear each fresh answer until they stop; refresh asks again", async () => {
  const server = stubServer();
  const data = createDataLayer({ fetchJson: server.fetchJson });
  const heard = [];
  const leave = new AbortController();
  data.subscribe("/atlases", (answer) => heard.push(answer), { signal: leave.signal });
  const first = data.load("/atlases");
  server.requests[0].answer([]);
  await first;
  const again = data.refresh("/atlases");
  assert.equal(server.requests.length, 2);
  server.requests[1].answer(["demo"]);
  assert.deepEqual(await again, ["demo"]);
  assert.deepEqual(heard, [[], ["demo"]]);
  leave.abort();
  const third = data.refresh("/atlases");
  server.requests[2].answer(["demo", "imagenet"]);
  await third;
  assert.equal(heard.length, 2);
  data.invalidate((url) => url.startsWith("/atl"));
  assert.equal(data.peek("/atlases"), undefined);
});

test("an answer not to keep is shared while on its way, then asked for again", async () => {
  const server = stubServer();
  const data = createDataLayer({ fetchJson: server.fetchJson });
  const [a, b] = [data.load("/api/models", { keep: false }), data.load("/api/models", { keep: false })];
  server.requests[0].answer(["x"]);
  assert.equal(await a, await b);
  assert.equal(data.peek("/api/models"), undefined);
  data.load("/api/models", { keep: false });
  assert.equal(server.requests.length, 2);
});
