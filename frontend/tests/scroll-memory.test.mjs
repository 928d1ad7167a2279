// Scroll positions kept per history entry, so back and forward land where the reader was.
import assert from "node:assert/strict";
import { test } from "node:test";

import { parsePositions, rememberScroll } from "../js/scroll-memory.js";

test("an entry's position is kept, replaced when it changes, and made the newest", () => {
  let positions = rememberScroll({}, "ea", 1200.4);
  positions = rememberScroll(positions, "eb", 0);
  positions = rememberScroll(positions, "ea", 300);
  assert.deepEqual(positions, { eb: 0, ea: 300 });
  assert.deepEqual(Object.keys(positions), ["eb", "ea"]);
  assert.deepEqual(rememberScroll({}, "ea", -5), { ea: 0 });
});

test("only the newest entries are kept", () => {
  let positions = {};
  for (let i = 0; i < 5; i++) positions = rememberScroll(positions, `e${i}`, i, 3);
  assert.deepEqual(positions, { e2: 2, e3: 3, e4: 4 });
});

test("stored text that is not positions reads as none", () => {
  assert.deepEqual(parsePositions(null), {});
  assert.deepEqual(parsePositions("not json"), {});
  assert.deepEqual(parsePositions("[1, 2]"), {});
  assert.deepEqual(parsePositions('{"ea": 10, "eb": "x"}'), { ea: 10 });
});
