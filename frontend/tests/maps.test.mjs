// Decoding the API's maps: float32 as sent, float16 (the shown maps) through the half-precision table.
import assert from "node:assert/strict";
import { test } from "node:test";

import { decodeMaps, fromHalves } from "../js/maps.js";

test("half-precision bit patterns become the floats they name", () => {
  const halves = Uint16Array.of(0x0000, 0x3c00, 0x3800, 0xc000, 0x0001, 0x3bff, 0x7c00, 0xfc00);
  assert.deepEqual([...fromHalves(halves)], [0, 1, 0.5, -2, 2 ** -24, 1 - 2 ** -11, Infinity, -Infinity]);
  assert.ok(Number.isNaN(fromHalves(Uint16Array.of(0x7e00))[0]));
});

test("maps decode by their dtype", () => {
  const base64 = (bytes) => Buffer.from(bytes.buffer).toString("base64");
  const half = decodeMaps({ shape: [1, 2], range: [0.5, 1], dtype: "float16", data: base64(Uint16Array.of(0x3800, 0x3c00)) });
  assert.deepEqual([...half.values], [0.5, 1]);
  const full = decodeMaps({ shape: [2], range: [0.1, 2], data: base64(Float32Array.of(0.1, 2)) });
  assert.deepEqual([...full.values], [...Float32Array.of(0.1, 2)]);
});

test("a map is decoded once: a redraw (an opacity tick) gets the same values back", () => {
  const encoded = { shape: [1], range: [0, 1], data: Buffer.from(Float32Array.of(1).buffer).toString("base64") };
  const first = decodeMaps(encoded);
  assert.equal(decodeMaps(encoded), first);
  assert.notEqual(decodeMaps({ ...encoded }), first);  // another answer, another decoding
});
