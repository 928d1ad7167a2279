// The vocabularies read from the API: the layer page's sorts from /api/statistics (stubbed here: the
// endpoint's shape is the server's), and what is left when the server lists none.
import assert from "node:assert/strict";
import { test } from "node:test";

import { sortsOf } from "../js/vocabularies.js";

const ANSWER = {
  sorts: [{ id: "unit", label: "unit index", order: "asc" },
    { id: "max_max", label: "max activation", order: "desc", description: "The highest value.", format: "number" },
    { id: 7, label: "not a sort" }, { id: "no_label" }],
  statistics: [{ id: "max_max", label: "max activation", description: "…", format: "number", sortable: true }],
};

test("the sorts of an /api/statistics answer, in its order; malformed entries dropped", () => {
  assert.deepEqual(sortsOf(ANSWER).map((s) => [s.id, s.label]), [["unit", "unit index"], ["max_max", "max activation"]]);
  assert.equal(sortsOf(ANSWER)[1].description, "The highest value.");
});

test("no answer, or one without sorts, gives none", () => {
  assert.deepEqual(sortsOf(null), []);
  assert.deepEqual(sortsOf({ statistics: [] }), []);
});

test("the layer page's sorts come from GET /api/statistics, asked once; none when it fails", async () => {
  const { layerSorts } = await import("../js/vocabularies.js");
  const asked = [];
  const real = globalThis.fetch;
  const warn = console.warn;
  const warnings = [];
  console.warn = (message) => warnings.push(message);
  try {
    globalThis.fetch = async (url) => {
      asked.push(url);
      return new Response(JSON.stringify({ error: { code: "not_found", message: "No route." } }), { status: 404 });
    };
    assert.deepEqual(await layerSorts(), []);  // not kept: the next ask tries again
    assert.deepEqual(await layerSorts(), []);
    assert.equal(warnings.length, 1);  // said once
    globalThis.fetch = async (url) => {
      asked.push(url);
      return new Response(JSON.stringify(ANSWER), { status: 200 });
    };
    assert.deepEqual((await layerSorts()).map((s) => s.id), ["unit", "max_max"]);
    assert.deepEqual((await layerSorts()).map((s) => s.id), ["unit", "max_max"]);
    assert.deepEqual(asked, ["/api/statistics", "/api/statistics", "/api/statistics"]);
  } finally {
    globalThis.fetch = real;
    console.warn = warn;
  }
});

test("a statistic's value is written by its declared format; no value is a dash", async () => {
  const { formatStatistic } = await import("../js/vocabularies.js");
  assert.equal(formatStatistic(0.4567, "percent"), "45.7%");
  assert.equal(formatStatistic(0.4567, "percent", 2), "46%");
  assert.equal(formatStatistic(12, "count"), "12");
  assert.equal(formatStatistic(1.23456, "number"), "1.235");
  assert.equal(formatStatistic(1.23456, "number", 2), "1.23");
  for (const none of [null, undefined, NaN]) assert.equal(formatStatistic(none, "percent"), "—");
  assert.equal(formatStatistic(0, "percent"), "0.0%");  // zero is a value
});

test("the statistics of an /api/statistics answer, in its order; malformed entries dropped", async () => {
  const { statisticsOf } = await import("../js/vocabularies.js");
  assert.deepEqual(statisticsOf({ statistics: [...ANSWER.statistics, { id: 3 }, { label: "x" }] }).map((s) => s.id), ["max_max"]);
  assert.deepEqual(statisticsOf(undefined), []);
});
