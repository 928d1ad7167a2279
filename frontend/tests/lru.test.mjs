// The LRU cache behind the data layer and the image cache: `node --test frontend/tests/`.
import assert from "node:assert/strict";
import { test } from "node:test";

import { LruCache } from "../js/lru.js";

test("past its bound it forgets the least recently used entry, and says which", () => {
  const forgotten = [];
  const cache = new LruCache(2, { onEvict: (key, value) => forgotten.push([key, value]) });
  cache.set("a", 1).set("b", 2);
  assert.equal(cache.get("a"), 1);  // a is now the most recent
  cache.set("c", 3);
  assert.deepEqual(forgotten, [["b", 2]]);
  assert.deepEqual([...cache.keys()], ["a", "c"]);
  assert.equal(cache.size, 2);
});

test("peek does not mark an entry used; set on a kept key refreshes it", () => {
  const cache = new LruCache(2);
  cache.set("a", 1).set("b", 2);
  assert.equal(cache.peek("a"), 1);
  cache.set("c", 3);
  assert.equal(cache.has("a"), false);
  cache.set("b", 20).set("d", 4);
  assert.deepEqual([...cache.keys()], ["b", "d"]);
  assert.equal(cache.get("missing"), undefined);
  assert.equal(cache.delete("b"), true);
  cache.clear();
  assert.equal(cache.size, 0);
});

test("a cache of no size is refused", () => {
  assert.throws(() => new LruCache(0), RangeError);
});
