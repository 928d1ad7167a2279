// Colormaps as 256-entry RGB lookup tables, interpolated from anchor colours. Pure.

const ANCHORS = {
  viridis: ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"],
  inferno: ["#000004", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446", "#ed6925", "#fb9b06", "#f7d13d", "#fcffa4"],
  turbo: ["#30123b", "#4662d7", "#36aaf9", "#1ae4b6", "#72fe5e", "#c8ef34", "#faba39", "#f66b19", "#ca2a04", "#7a0403"],
  gray: ["#000000", "#ffffff"],
};

export const COLORMAPS = Object.keys(ANCHORS);

function hexToRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

const cache = new Map();

/** A Uint8Array of 256 * 3 values: the colour of level i at [3i, 3i + 3). Unknown names fall back to viridis. */
export function lookupTable(name) {
  const key = ANCHORS[name] ? name : "viridis";
  if (cache.has(key)) return cache.get(key);
  const anchors = ANCHORS[key].map(hexToRgb);
  const table = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const position = (i / 255) * (anchors.length - 1);
    const low = Math.min(Math.floor(position), anchors.length - 2);
    const t = position - low;
    for (let channel = 0; channel < 3; channel++) {
      table[3 * i + channel] = Math.round(anchors[low][channel] * (1 - t) + anchors[low + 1][channel] * t);
    }
  }
  cache.set(key, table);
  return table;
}
