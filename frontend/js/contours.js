// The outline of a map's region (where it reaches a level) as line segments, by marching squares on the
// map upsampled bilinearly (as the canvas smooths it), so a 7x7 map gets a smooth outline. Pure.

/** Bilinear upsampling of an (h, w) map by an integer `factor`, sampling at cell centres as canvas does. */
export function upsample({ h, w, values }, factor) {
  if (factor <= 1) return { h, w, values };
  const H = h * factor;
  const W = w * factor;
  const out = new Float32Array(H * W);
  const clamp = (v, n) => Math.min(Math.max(v, 0), n - 1);
  for (let i = 0; i < H; i++) {
    const y = clamp((i + 0.5) / factor - 0.5, h);
    const y0 = Math.floor(y);
    const y1 = Math.min(y0 + 1, h - 1);
    const fy = y - y0;
    for (let j = 0; j < W; j++) {
      const x = clamp((j + 0.5) / factor - 0.5, w);
      const x0 = Math.floor(x);
      const x1 = Math.min(x0 + 1, w - 1);
      const fx = x - x0;
      const top = values[y0 * w + x0] * (1 - fx) + values[y0 * w + x1] * fx;
      const bottom = values[y1 * w + x0] * (1 - fx) + values[y1 * w + x1] * fx;
      out[i * W + j] = top * (1 - fy) + bottom * fy;
    }
  }
  return { h: H, w: W, values: out };
}

// For each of the 16 corner cases (bit 8: top-left, 4: top-right, 2: bottom-right, 1: bottom-left at or
// above the level), the pairs of cell edges (0 top, 1 right, 2 bottom, 3 left) that a segment joins.
// The two saddles (5 and 10) are resolved by the cell's mean in `contourSegments`.
const EDGES = [[], [[3, 2]], [[2, 1]], [[3, 1]], [[0, 1]], null, [[0, 2]], [[3, 0]],
  [[3, 0]], [[0, 2]], null, [[0, 1]], [[3, 1]], [[2, 1]], [[3, 2]], []];

/**
 * Segments [x0, y0, x1, y1] where `map` crosses `level`, in map units: the map spans [0, w] x [0, h] and
 * its value i sits at the centre of cell i. Empty when no value reaches the level, or all do.
 */
export function contourSegments({ h, w, values }, level) {
  const segments = [];
  const at = (i, j) => values[i * w + j];
  for (let i = 0; i + 1 < h; i++) {
    for (let j = 0; j + 1 < w; j++) {
      const corners = [at(i, j), at(i, j + 1), at(i + 1, j + 1), at(i + 1, j)];  // clockwise from top-left
      const code = (corners[0] >= level) * 8 + (corners[1] >= level) * 4 + (corners[2] >= level) * 2
        + (corners[3] >= level);
      let pairs = EDGES[code];
      if (pairs === null) {
        const centreIn = (corners[0] + corners[1] + corners[2] + corners[3]) / 4 >= level;
        // Two opposite corners in: with the centre in they join and the other two are cut off, else they are.
        pairs = (code === 5) === centreIn ? [[3, 0], [1, 2]] : [[0, 1], [2, 3]];
      }
      for (const [a, b] of pairs) {
        segments.push([...crossing(a, i, j, corners, level), ...crossing(b, i, j, corners, level)]);
      }
    }
  }
  return segments;
}

// Where `level` crosses edge `edge` of cell (i, j), by linear interpolation between its two corners.
function crossing(edge, i, j, corners, level) {
  const [from, to] = [[0, 1], [1, 2], [3, 2], [0, 3]][edge];
  const a = corners[from];
  const b = corners[to];
  const t = a === b ? 0.5 : (level - a) / (b - a);
  const x = j + 0.5 + (edge === 0 || edge === 2 ? t : edge === 1 ? 1 : 0);
  const y = i + 0.5 + (edge === 1 || edge === 3 ? t : edge === 2 ? 1 : 0);
  return [x, y];
}
