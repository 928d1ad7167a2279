// Every vocabulary the front end shares with the server, in one place, read from the API: the layer page's
// sorts and the statistics (GET /api/statistics), the CAM methods with their costs in words and which ones
// the image page opens with (GET /api/methods). Progress answers carry their own words (`note`).

import { camMethods, statistics } from "./data.js";

let sortsMissing = false;

/** The layer page's sorts, in the server's order: [{ id, label, order, ... }]; [] when the server lists none
 *  (the page then leaves its sort menu out, and the console says why, once). */
export async function layerSorts({ signal } = {}) {
  try {
    return sortsOf(await statistics({ signal }));
  } catch (error) {
    if (error.name === "AbortError") throw error;
    if (!sortsMissing) console.warn(`No sorts for the layer page: /api/statistics answered ${error.message}`);
    sortsMissing = true;
    return [];
  }
}

/** The sorts of an /api/statistics answer, each with an id and a label (anything else is dropped). */
export function sortsOf(answer) {
  return (answer?.sorts ?? []).filter((sort) => typeof sort?.id === "string" && typeof sort.label === "string");
}

/** The per-unit statistics a unit page lists, in the server's order: [{ id, label, description, format }];
 *  [] when the server lists none (the page then shows no statistics panel). */
export async function unitStatistics({ signal } = {}) {
  try {
    return statisticsOf(await statistics({ signal }));
  } catch (error) {
    if (error.name === "AbortError") throw error;
    console.warn(`No statistics for the unit page: /api/statistics answered ${error.message}`);
    return [];
  }
}

/** The statistics of an /api/statistics answer, each with an id and a label (anything else is dropped). */
export function statisticsOf(answer) {
  return (answer?.statistics ?? []).filter((s) => typeof s?.id === "string" && typeof s.label === "string");
}

/** A statistic's value as text, by its declared format: "percent" (a fraction, shown as %), "count", or a
 *  number (`digits` decimals). No value (a statistic that does not apply, such as border peaks on a 1 x 1
 *  map) is a dash. */
export function formatStatistic(value, format, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
  if (format === "percent") return `${(Number(value) * 100).toFixed(Math.max(digits - 2, 0))}%`;
  if (format === "count") return String(Math.round(Number(value)));
  return Number(value).toFixed(digits);
}

/** The CAM methods, in the registry's order. */
export const methodList = ({ signal } = {}) => camMethods({ signal });
