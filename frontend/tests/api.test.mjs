// Requests against a stubbed fetch: a GET answered 503 with Retry-After asks again; nothing else is repeated.
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { ApiError, getJson, postJson, retryWait } from "../js/api.js";

const realFetch = globalThis.fetch;
afterEach(() => { globalThis.fetch = realFetch; });

const restarting = () => new Response(JSON.stringify({ error: { code: "model_worker_unavailable", message: "restarting" } }),
  { status: 503, headers: { "Retry-After": "0", "Content-Type": "application/json" } });
const answer = (body) => new Response(JSON.stringify(body), { status: 200, headers: { "Content-Type": "application/json" } });

/** A fetch that gives `responses` in turn and counts its calls. */
function stubFetch(responses) {
  const stub = async () => responses[Math.min(stub.calls++, responses.length - 1)]();
  stub.calls = 0;
  globalThis.fetch = stub;
  return stub;
}

test("a GET answered 503 with Retry-After asks again until the worker answers", async () => {
  const fetch = stubFetch([restarting, restarting, () => answer({ ok: 1 })]);
  assert.deepEqual(await getJson("/api/x"), { ok: 1 });
  assert.equal(fetch.calls, 3);
});

test("a POST, and a 503 without Retry-After, fail at once with the server's message", async () => {
  let fetch = stubFetch([restarting, () => answer({ ok: 1 })]);
  await assert.rejects(postJson("/api/x", {}), (error) => error instanceof ApiError && error.status === 503
    && error.message === "restarting");
  assert.equal(fetch.calls, 1);
  fetch = stubFetch([() => new Response("{}", { status: 503 }), () => answer({ ok: 1 })]);
  await assert.rejects(getJson("/api/x"), (error) => error.status === 503 && error.message === "HTTP 503");
  assert.equal(fetch.calls, 1);
});

test("an abort while waiting to ask again ends the request", async () => {
  stubFetch([() => new Response("{}", { status: 503, headers: { "Retry-After": "5" } })]);
  const controller = new AbortController();
  const pending = getJson("/api/x", { signal: controller.signal });
  setTimeout(() => controller.abort(), 10);
  await assert.rejects(pending, (error) => error.name === "AbortError");
});

test("Retry-After in seconds, capped at five; an HTTP date waits a second", () => {
  assert.equal(retryWait("2"), 2000);
  assert.equal(retryWait("120"), 5000);
  assert.equal(retryWait("Wed, 21 Oct 2026 07:28:00 GMT"), 1000);
});

test("a page left while an answer's body arrives ends in the abort, never in an answer of null", async () => {
  const aborted = () => ({ ok: true, status: 200, headers: new Headers(),
    json: async () => { throw new DOMException("The operation was aborted.", "AbortError"); } });
  stubFetch([aborted]);
  await assert.rejects(getJson("/api/x"), (error) => error.name === "AbortError");
  stubFetch([() => new Response("<html>", { status: 200 })]);
  await assert.rejects(getJson("/api/x"), (error) => error instanceof ApiError && error.code === "bad_response");
  stubFetch([() => new Response("<html>", { status: 502 })]);
  await assert.rejects(getJson("/api/x"), (error) => error instanceof ApiError && error.message === "HTTP 502");
});
