// Where each history entry was scrolled to, so back and forward return there: the views render after
// their data arrives, too late for the browser's own restoration (a virtual grid is not yet tall enough).
// Pure: unit-tested under node; the router keeps the positions in sessionStorage.

export const REMEMBERED_ENTRIES = 100;

/** `positions` ({ entry: y }, oldest first) with `entry` at `y`, made newest; the oldest beyond `limit` go. */
export function rememberScroll(positions, entry, y, limit = REMEMBERED_ENTRIES) {
  const next = Object.fromEntries(Object.entries(positions).filter(([key]) => key !== entry));
  next[entry] = Math.max(0, Math.round(y));
  const keys = Object.keys(next);
  for (const key of keys.slice(0, Math.max(0, keys.length - limit))) delete next[key];
  return next;
}

/** Positions read back from storage; anything unreadable is no positions at all. */
export function parsePositions(text) {
  try {
    const value = JSON.parse(text ?? "{}");
    if (value === null || typeof value !== "object" || Array.isArray(value)) return {};
    return Object.fromEntries(Object.entries(value).filter(([, y]) => Number.isFinite(y)));
  } catch {
    return {};
  }
}
