// The front end's one data layer: every view asks here for the API's answers, never `fetch`es them itself.
// Answers that do not change while the page is open (a model's card, the CAM methods, the statistics) are
// kept for good, the atlases for a short while (one is built while the page is open), a unit's JSON by its
// URL for a few minutes; each pool is an LRU with a size bound. Two views asking for the same URL at once
// share one request; a caller's AbortSignal ends its own wait, and the request itself once nobody waits for
// it. `subscribe` hears every fresh answer for a URL, `refresh` asks the server again.
// `createDataLayer` is pure apart from the `fetchJson` it is given, and is unit-tested under node.

import { getJson, postJson } from "./api.js";
import { LruCache } from "./lru.js";
import { apiUrl } from "./urls.js";

export const LIFE = {
  forever: Infinity,
  atlases: 30_000,  // an atlas being built shows up within half a minute (and at once after a 409: forgetAtlases)
  unit: 10 * 60_000,  // an atlas is rebuilt only by a server restart; a page left open that long asks again
};

const abortError = (signal) => signal.reason ?? new DOMException("The request was aborted.", "AbortError");

/**
 * A cache of JSON answers by URL. `fetchJson(url, { signal })`: the request; `size`: how many answers it
 * keeps; `now()`: the clock, in ms.
 */
export function createDataLayer({ fetchJson = getJson, size = 64, now = () => Date.now() } = {}) {
  const cache = new LruCache(size);  // url -> { value, expires }
  const inflight = new Map();  // url -> { promise, controller, waiters, life }
  const listeners = new Map();  // url -> Set of functions

  const fresh = (url) => {
    const hit = cache.get(url);
    if (hit && hit.expires > now()) return hit;
    if (hit) cache.delete(url);
    return null;
  };

  function start(url, life, keep) {
    const controller = new AbortController();
    const flight = { controller, waiters: 0 };
    const settle = () => {
      if (inflight.get(url) === flight) inflight.delete(url);
    };
    flight.promise = fetchJson(url, { signal: controller.signal }).then((value) => {
      settle();
      if (keep) cache.set(url, { value, expires: now() + life });
      for (const listener of [...(listeners.get(url) ?? [])]) listener(value);
      return value;
    }, (error) => {
      settle();  // errors are not kept: the next ask tries again
      throw error;
    });
    inflight.set(url, flight);
    return flight;
  }

  // One caller's wait on a shared request: its own signal rejects its own promise; the last caller to leave
  // ends the request.
  function wait(url, flight, signal) {
    flight.waiters += 1;
    return new Promise((resolve, reject) => {
      let waiting = true;
      const leave = () => {
        waiting = false;
        flight.waiters -= 1;
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        if (!waiting) return;
        leave();
        if (flight.waiters === 0 && inflight.get(url) === flight) {
          inflight.delete(url);
          flight.controller.abort();
        }
        reject(abortError(signal));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      flight.promise.then((value) => {
        if (waiting) { leave(); resolve(value); }
      }, (error) => {
        if (waiting) { leave(); reject(error); }
      });
    });
  }

  /** The answer for `url`: kept, in flight, or asked for now; `life`: how long a new answer is kept (ms);
   *  `keep: false`: an answer shared only while it is on its way (large, or changing). */
  function load(url, { signal, life = LIFE.forever, keep = true } = {}) {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const hit = fresh(url);
    if (hit) return Promise.resolve(hit.value);
    return wait(url, inflight.get(url) ?? start(url, life, keep), signal);
  }

  /** The kept answer for `url`, or undefined: no request. */
  function peek(url) {
    return fresh(url)?.value;
  }

  /** Forget the answers whose URL is `url`, or passes `url` when it is a function. */
  function invalidate(url) {
    const match = typeof url === "function" ? url : (key) => key === url;
    for (const key of [...cache.keys()]) if (match(key)) cache.delete(key);
  }

  /** Ask the server again, whatever is kept; subscribers hear the new answer. */
  function refresh(url, options = {}) {
    invalidate(url);
    const flight = inflight.get(url);
    if (flight) {  // an answer already on its way may predate what the caller knows: start over
      inflight.delete(url);
      if (flight.waiters === 0) flight.controller.abort();
    }
    return load(url, options);
  }

  /** Call `listener(answer)` with each fresh answer for `url` until the returned function is called or
   *  `signal` aborts. */
  function subscribe(url, listener, { signal } = {}) {
    if (!listeners.has(url)) listeners.set(url, new Set());
    listeners.get(url).add(listener);
    const stop = () => {
      listeners.get(url)?.delete(listener);
      if (listeners.get(url)?.size === 0) listeners.delete(url);
      signal?.removeEventListener("abort", stop);
    };
    signal?.addEventListener("abort", stop, { once: true });
    return stop;
  }

  return { load, peek, invalidate, refresh, subscribe, get size() { return cache.size; },
    get pending() { return inflight.size; } };
}

// Two pools, so a long walk through units never pushes a model's card out.
const meta = createDataLayer({ size: 32 });
const units = createDataLayer({ size: 64 });

/** Every model with its load status (not kept: a model loading now is ready on the next look). */
export const modelList = ({ signal } = {}) => meta.load(apiUrl.models(), { signal, keep: false });

/** A model's card (/api/models/{id}): its layers, labels, input. */
export const modelCard = (modelId, { signal } = {}) => meta.load(apiUrl.model(modelId), { signal });

/** The model's atlases (a list; [] when the server has none to give), kept for a short while. */
export async function modelAtlases(modelId, { signal } = {}) {
  try {
    return (await meta.load(apiUrl.atlases(modelId), { signal, life: LIFE.atlases })).atlases;
  } catch (error) {
    if (error.name === "AbortError") throw error;
    return [];
  }
}

/** After an atlas problem (none yet, or one being built): the next look at the atlases asks the server. */
export const forgetAtlases = (modelId) => meta.invalidate(apiUrl.atlases(modelId));

/** The CAM methods' registry (/api/methods). */
export const camMethods = ({ signal } = {}) => meta.load(apiUrl.methods(), { signal }).then((body) => body.methods);

/** The per-unit statistics and the sorts of a layer's units (/api/statistics). */
export const statistics = ({ signal } = {}) => meta.load(apiUrl.statistics(), { signal });

/** A unit's JSON (statistics, top images, similar units) and its maps, by URL. */
export const unitDetail = (modelId, layer, unit, query, { signal } = {}) =>
  units.load(apiUrl.unit(modelId, layer, unit, query), { signal, life: LIFE.unit });
export const unitMaps = (modelId, layer, unit, query, { signal } = {}) =>
  units.load(apiUrl.unitMaps(modelId, layer, unit, query), { signal, life: LIFE.unit });

/** An image's facts (/api/images/{id}): not kept, an upload's page is seldom opened twice. */
export const imageInfo = (imageId, { signal } = {}) => meta.load(apiUrl.image(imageId), { signal, keep: false });

/** One image of each class of a dataset, to start from. */
export const datasetSamples = (dataset, { signal } = {}) => meta.load(apiUrl.datasetSamples(dataset), { signal });

/** A page of a layer's units (with their top maps when asked): not kept, the grid keeps its own pages. */
export const layerUnits = (modelId, layer, query, { signal } = {}) =>
  units.load(apiUrl.units(modelId, layer, query), { signal, keep: false });

/** For views that need more: the pools themselves (subscribe, refresh). */
/** Search results: asked afresh (notes and atlases change), shared only while on their way. */
export const searchUnits = (query, { signal } = {}) => meta.load(apiUrl.search(query), { signal, keep: false });

/** A model's detectors summary on an atlas with concept labels. */
export const conceptSummary = (modelId, query, { signal } = {}) =>
  meta.load(apiUrl.concepts(modelId, query), { signal, life: LIFE.unit });

/** A model's dictionaries, and whether the atlas of `query.dataset` has their features. */
export const modelDictionaries = (modelId, query, { signal } = {}) =>
  meta.load(apiUrl.dictionaries(modelId, query), { signal, life: LIFE.atlases });

/** The notes on a unit (`query.kind`: a dictionary's feature), asked afresh each time (anyone may have written one). */
export const unitNotes = (modelId, layer, unit, query, { signal } = {}) =>
  meta.load(apiUrl.notes(modelId, layer, unit, query), { signal, keep: false });

/** Write a note on a unit ({ text, author }); the answer is the note as stored. */
export const addNote = (modelId, layer, unit, query, note, { signal } = {}) =>
  postJson(apiUrl.notes(modelId, layer, unit, query), note, { signal });

export const pools = { meta, units };
