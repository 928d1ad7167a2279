// Raw activation maps from the API (base64 float32) and their drawing as heatmaps on canvas.

import { lookupTable } from "./colormaps.js";
import { contourSegments, upsample } from "./contours.js";
import { LruCache } from "./lru.js";

// Each encoded map is decoded once: a redraw (an opacity tick) reuses it, and it goes with its answer.
const decodedMaps = new WeakMap();

/** Decode the API's map encoding (base64 float32, or float16) into { shape, range, values: Float32Array };
 *  the same encoded object gives the same decoded one. */
export function decodeMaps(encoded) {
  let decoded = decodedMaps.get(encoded);
  if (!decoded) {
    decoded = decode(encoded);
    decodedMaps.set(encoded, decoded);
  }
  return decoded;
}

function decode(encoded) {
  const bytes = Uint8Array.from(atob(encoded.data), (c) => c.charCodeAt(0));
  const values = encoded.dtype === "float16" ? fromHalves(new Uint16Array(bytes.buffer)) : new Float32Array(bytes.buffer);
  return { shape: encoded.shape, range: encoded.range, values };
}

let halfTable = null;

/** IEEE 754 half-precision bit patterns to float32, through a table of all 65,536 of them. */
export function fromHalves(halves) {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exponent = (h >> 10) & 0x1f;
      const fraction = h & 0x3ff;
      halfTable[h] = exponent === 0 ? sign * 2 ** -14 * (fraction / 1024)
        : exponent === 31 ? (fraction ? NaN : sign * Infinity)
          : sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
    }
  }
  return Float32Array.from(halves, (h) => halfTable[h]);
}

/** The (h, w) map number `index` of a decoded stack. */
export function mapAt(decoded, index) {
  const [, h, w] = decoded.shape;
  return { h, w, values: decoded.values.subarray(index * h * w, (index + 1) * h * w) };
}

/** How fast a heatmap's low values fade out: a position's opacity is its scaled value to this power. */
export const FADE_GAMMA = 0.5;

/**
 * Draw `image` with a heatmap of `map` over it. Values are scaled by [low, high] (one scale for a whole
 * gallery, so maps compare); a position's opacity is `opacity` times its scaled value to the power `gamma`,
 * so low values stay clear. With `mask`, only positions at or above `threshold` are coloured; `outline`
 * (a value, or null) draws the region's edge at that level, dark under light, seen on any background.
 * `region` (fractions of the image: x, y, w, h) crops the view.
 */
export function drawHeatmap(canvas, image, map, { low, high, colormap = "viridis", opacity = 0.5, gamma = FADE_GAMMA,
  mask = false, threshold = 0, outline = null, region = null }) {
  const context = canvas.getContext("2d");
  const sx = region ? region.x * image.naturalWidth : 0;
  const sy = region ? region.y * image.naturalHeight : 0;
  const sw = region ? region.w * image.naturalWidth : image.naturalWidth;
  const sh = region ? region.h * image.naturalHeight : image.naturalHeight;
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.imageSmoothingEnabled = true;
  context.drawImage(image, sx, sy, sw, sh, 0, 0, canvas.width, canvas.height);
  if (!map || opacity <= 0) return;
  const small = document.createElement("canvas");
  small.width = map.w;
  small.height = map.h;
  const pixels = small.getContext("2d").createImageData(map.w, map.h);
  const table = lookupTable(colormap);
  const span = high > low ? high - low : 1;
  for (let i = 0; i < map.values.length; i++) {
    const value = map.values[i];
    const level = Math.max(0, Math.min(255, Math.round(((value - low) / span) * 255)));
    pixels.data.set(table.subarray(3 * level, 3 * level + 3), 4 * i);
    // Low values fade out so the image stays readable under weak activations.
    pixels.data[4 * i + 3] = mask && value < threshold ? 0 : Math.round(255 * (level / 255) ** gamma);
  }
  small.getContext("2d").putImageData(pixels, 0, 0);
  context.globalAlpha = opacity;
  // The map covers the whole image (the model's view of it): crop it the same way, in map cells.
  const view = { x: (sx / image.naturalWidth) * map.w, y: (sy / image.naturalHeight) * map.h,
    w: (sw / image.naturalWidth) * map.w, h: (sh / image.naturalHeight) * map.h };
  context.drawImage(small, view.x, view.y, view.w, view.h, 0, 0, canvas.width, canvas.height);
  context.globalAlpha = 1;
  if (outline !== null) drawOutline(context, map, outline, view);
}

// Outlines are traced on the map upsampled to about 64 cells a side, so a 7x7 map's edge is smooth.
const OUTLINE_CELLS = 64;

function drawOutline(context, map, level, view) {
  const factor = Math.max(1, Math.min(8, Math.round(OUTLINE_CELLS / Math.max(map.h, map.w))));
  const segments = contourSegments(upsample(map, factor), level);
  if (!segments.length) return;
  const scaleX = context.canvas.width / (view.w * factor);
  const scaleY = context.canvas.height / (view.h * factor);
  context.beginPath();
  for (const [x0, y0, x1, y1] of segments) {
    context.moveTo((x0 - view.x * factor) * scaleX, (y0 - view.y * factor) * scaleY);
    context.lineTo((x1 - view.x * factor) * scaleX, (y1 - view.y * factor) * scaleY);
  }
  context.lineCap = "round";
  context.lineJoin = "round";
  context.strokeStyle = "rgba(0, 0, 0, 0.8)";
  context.lineWidth = 3.5;
  context.stroke();
  context.strokeStyle = "#ffffff";
  context.lineWidth = 1.5;
  context.stroke();
}

/** A one-pixel-high canvas (256 wide) filled with a colormap from its low end to its high end, each colour as
 *  opaque as a heatmap drawn with `gamma` shows it (drawHeatmap): the low end fades out as the maps' lows do. */
export function drawColorbar(canvas, colormap, { gamma = FADE_GAMMA } = {}) {
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(256, 1);
  const table = lookupTable(colormap);
  for (let i = 0; i < 256; i++) {
    pixels.data.set(table.subarray(3 * i, 3 * i + 3), 4 * i);
    pixels.data[4 * i + 3] = Math.round(255 * (i / 255) ** gamma);
  }
  context.putImageData(pixels, 0, 0);
}

// The images drawn lately: a layer grid's screenful and a few unit galleries (the browser's HTTP cache keeps
// more, at the cost of decoding them again).
const IMAGES_KEPT = 512;
const loaded = new LruCache(IMAGES_KEPT);

/** Load an image once per URL (while it is among the last IMAGES_KEPT used); a failed load is tried again. */
export function loadImage(url) {
  let image = loaded.get(url);
  if (!image) {
    image = new Promise((resolve, reject) => {
      const element = new Image();
      element.onload = () => resolve(element);
      element.onerror = () => reject(new Error(`could not load ${url}`));
      element.src = url;
    });
    loaded.set(url, image);
    image.catch(() => {
      if (loaded.peek(url) === image) loaded.delete(url);
    });
  }
  return image;
}

/** Tint the pixels a mask image covers (opaque where the concept is), over what the canvas shows, cropped to
 *  the same `region` as the heatmap (fractions of the model's view). */
export function drawMaskTint(canvas, mask, { region = null, colour = "rgba(255, 64, 200, 0.5)" } = {}) {
  const tint = document.createElement("canvas");
  tint.width = canvas.width;
  tint.height = canvas.height;
  const context = tint.getContext("2d");
  const sx = region ? region.x * mask.naturalWidth : 0;
  const sy = region ? region.y * mask.naturalHeight : 0;
  const sw = region ? region.w * mask.naturalWidth : mask.naturalWidth;
  const sh = region ? region.h * mask.naturalHeight : mask.naturalHeight;
  context.imageSmoothingEnabled = false;
  context.drawImage(mask, sx, sy, sw, sh, 0, 0, tint.width, tint.height);
  context.globalCompositeOperation = "source-in";  // the colour, where the mask is opaque
  context.fillStyle = colour;
  context.fillRect(0, 0, tint.width, tint.height);
  canvas.getContext("2d").drawImage(tint, 0, 0);
}
