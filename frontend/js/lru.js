// A map that forgets its least recently used entries past a size bound. Pure: unit-tested under node.
// A Map keeps insertion order, so re-inserting on every read keeps the oldest entry first.

export class LruCache {
  /** `max`: how many entries it keeps; `onEvict(key, value)`: told of each entry it forgets for room. */
  constructor(max, { onEvict = null } = {}) {
    if (!(Number.isInteger(max) && max > 0)) throw new RangeError(`an LRU cache needs a size of 1 or more, not ${max}`);
    this.max = max;
    this.onEvict = onEvict;
    this.entries = new Map();
  }

  get size() {
    return this.entries.size;
  }

  has(key) {
    return this.entries.has(key);
  }

  /** The value (now the most recently used), or undefined. */
  get(key) {
    if (!this.entries.has(key)) return undefined;
    const value = this.entries.get(key);
    this.entries.delete(key);
    this.entries.set(key, value);
    return value;
  }

  /** The value without marking it used. */
  peek(key) {
    return this.entries.get(key);
  }

  set(key, value) {
    this.entries.delete(key);
    this.entries.set(key, value);
    while (this.entries.size > this.max) {
      const [oldest, forgotten] = this.entries.entries().next().value;
      this.entries.delete(oldest);
      this.onEvict?.(oldest, forgotten);
    }
    return this;
  }

  delete(key) {
    return this.entries.delete(key);
  }

  clear() {
    this.entries.clear();
  }

  keys() {
    return this.entries.keys();
  }
}
