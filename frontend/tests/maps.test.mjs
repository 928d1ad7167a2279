// Decoding the API's maps: float32 as sent, float16 (the shown maps) through the half-precision table; the colour scale.
import assert from "node:assert/strict";
import { test } from "node:test";

import { FADE_GAMMA, decodeMaps, drawColorbar, fromHalves } from "../js/maps.js";

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

// A canvas stand-in with the one 2D call drawColorbar makes (node has no canvas).
function colorbarPixels(gamma) {
  let drawn = null;
  const context = {
    createImageData: (w, h) => ({ width: w, height: h, data: new Uint8ClampedArray(4 * w * h) }),
    putImageData: (pixels) => { drawn = pixels; },
  };
  drawColorbar({ getContext: () => context }, "viridis", gamma === undefined ? undefined : { gamma });
  return drawn.data;
}

test("a colour scale fades its low end as the heatmaps drawn with its gamma do", () => {
  const alpha = (pixels, i) => pixels[4 * i + 3];
  const linear = colorbarPixels(1);
  assert.deepEqual([alpha(linear, 0), alpha(linear, 51), alpha(linear, 255)], [0, 51, 255]);
  const faded = colorbarPixels();  // the maps' default, FADE_GAMMA
  assert.equal(alpha(faded, 0), 0);
  assert.equal(alpha(faded, 64), Math.round(255 * (64 / 255) ** FADE_GAMMA));
  assert.equal(alpha(faded, 255), 255);
});
