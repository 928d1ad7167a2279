// Unit tests of the pure URL module: `node --test frontend/tests/` (run by tests/test_frontend_units.py).
import assert from "node:assert/strict";
import { test } from "node:test";

import { apiUrl, pageUrl, parseRoute, withQuery } from "../js/urls.js";

test("page URLs round-trip through parseRoute", () => {
  assert.deepEqual(parseRoute(pageUrl.home()), { view: "home", params: {}, query: {} });
  const url = pageUrl.model("shapes-cnn", { q: "block 3", all: true });
  assert.equal(url, "/m/shapes-cnn?all=1&q=block+3");
  const [path, search] = url.split("?");
  assert.deepEqual(parseRoute(path, `?${search}`),
    { view: "model", params: { model: "shapes-cnn" }, query: { all: "1", q: "block 3" } });
});

test("empty and false query values are dropped, keys sorted", () => {
  assert.equal(withQuery("/m/x", { z: "", all: false, b: null, a: 0 }), "/m/x?a=0");
});

test("ids are encoded", () => {
  assert.equal(apiUrl.model("a/b"), "/api/models/a%2Fb");
  assert.deepEqual(parseRoute("/m/a%2Fb").params, { model: "a/b" });
});

test("unknown paths are notfound", () => {
  assert.equal(parseRoute("/nope").view, "notfound");
  assert.equal(parseRoute("/m/a/b/c/d").view, "notfound");
});

test("a unit that is no number is notfound, saying what a unit is", () => {
  for (const path of ["/m/shapes-cnn/block3/-1", "/m/shapes-cnn/block3/1.5", "/m/shapes-cnn/block3/sae-192/-1"]) {
    const route = parseRoute(path);
    assert.equal(route.view, "notfound", path);
    assert.match(route.params.reason, /a unit is a number from 0 \(\/m\/shapes-cnn\/block3\/0\)/);
  }
  assert.deepEqual(parseRoute("/m/shapes-cnn/block3/sae-192").query, { kind: "sae-192" });
});

test("dataset images: the file, or the model's view of it", () => {
  assert.equal(apiUrl.datasetImage("demo", 3), "/api/datasets/demo/images/3");
  assert.equal(apiUrl.datasetImage("demo", 3, "shapes-cnn"), "/api/datasets/demo/images/3?model=shapes-cnn");
});

test("image pages: uploads and dataset images round-trip, the colon kept readable", () => {
  const url = pageUrl.image("demo:17", { model: "shapes-cnn", layer: "block4" });
  assert.equal(url, "/image/demo:17?layer=block4&model=shapes-cnn");
  const [path, search] = url.split("?");
  assert.deepEqual(parseRoute(path, `?${search}`), { view: "image", params: { image: "demo:17" },
    query: { layer: "block4", model: "shapes-cnn" } });
  assert.deepEqual(parseRoute("/image/0123456789abcdef0123").params, { image: "0123456789abcdef0123" });
  assert.equal(parseRoute("/image").view, "upload");
  assert.equal(apiUrl.predictions("a/b:1", { model: "m", k: 5 }), "/api/images/a%2Fb:1/predictions?k=5&model=m");
  assert.equal(apiUrl.imageFile("demo:1"), "/api/images/demo:1/file");
});

test("a unit is (model, layer, kind, index): a kind other than a channel is a path segment, as the server writes it", async () => {
  const { parseRoute, pageUrl, apiUrl, atlasQuery } = await import("../js/urls.js");
  // app/api/links.py: unit_page("m", "features.3", 7, "demo", "feature"), layer_page(..., "feature")
  assert.equal(pageUrl.unit("m", "features.3", 7, { dataset: "demo", kind: "feature" }), "/m/m/features.3/feature/7?dataset=demo");
  assert.equal(pageUrl.layer("m", "features.3", { dataset: "demo", kind: "feature" }), "/m/m/features.3/feature?dataset=demo");
  assert.equal(pageUrl.unit("m", "features.3", 7, { dataset: "demo", kind: "channel" }), "/m/m/features.3/7?dataset=demo");
  assert.deepEqual(parseRoute("/m/m/features.3/feature/7", "?dataset=demo"),
    { view: "unit", params: { model: "m", layer: "features.3", unit: 7 }, query: { dataset: "demo", kind: "feature" } });
  assert.deepEqual(parseRoute("/m/m/features.3/feature", "?dataset=demo"),
    { view: "layer", params: { model: "m", layer: "features.3" }, query: { dataset: "demo", kind: "feature" } });
  assert.deepEqual(parseRoute("/m/m/features.3/7").params, { model: "m", layer: "features.3", unit: 7 });
  assert.equal(parseRoute("/m/m/features.3/7").query.kind, undefined);  // a channel, as every older link
  // The API takes the kind as a query parameter; a channel's requests are the ones they always were.
  assert.equal(apiUrl.unit("m", "l", 7, atlasQuery({ dataset: "demo", kind: "feature" })), "/api/models/m/layers/l/units/7?dataset=demo&kind=feature");
  assert.equal(apiUrl.unit("m", "l", 7, atlasQuery({ dataset: "demo", kind: "channel" })), "/api/models/m/layers/l/units/7?dataset=demo");
});

test("the search page and a model's concepts page", () => {
  assert.equal(pageUrl.search({ q: "red square", model: "shapes-cnn" }), "/search?model=shapes-cnn&q=red+square");
  assert.deepEqual(parseRoute("/search", "?q=square"), { view: "search", params: {}, query: { q: "square" } });
  assert.equal(pageUrl.concepts("shapes-cnn", { dataset: "demo" }), "/m/shapes-cnn/concepts?dataset=demo");
  assert.deepEqual(parseRoute("/m/shapes-cnn/concepts").view, "concepts");
  assert.equal(apiUrl.conceptMask("m", "shape:square", 7, { dataset: "demo" }),
    "/api/models/m/concepts/shape%3Asquare/masks/7.png?dataset=demo");
});
