import assert from "node:assert/strict";
import { test } from "node:test";

import { runnable, withCode } from "../js/dom.js";

test("a suggested job command gets the server's flags, other commands and texts do not", () => {
  const flags = "--model-dir /cards --data-dir '/my data'";
  assert.equal(runnable("fovea index r18 --dataset PATH", flags), `fovea index r18 --dataset PATH ${flags}`);
  assert.equal(runnable("fovea dissect r18 --dataset demo", flags), `fovea dissect r18 --dataset demo ${flags}`);
  assert.equal(runnable("fovea dictionary r18 --layer layer4", flags), `fovea dictionary r18 --layer layer4 ${flags}`);
  assert.equal(runnable("fovea visualize r18", flags), `fovea visualize r18 ${flags}`);
  assert.equal(runnable("fovea indexes", flags), "fovea indexes");
  assert.equal(runnable("pip install -e '.[imagenet]'", flags), "pip install -e '.[imagenet]'");
  assert.equal(runnable("fovea index r18", ""), "fovea index r18");
});

test("a message's commands are code, and everything is escaped", () => {
  assert.equal(String(withCode("run `fovea <x>` & wait")), "run <code>fovea &lt;x&gt;</code> &amp; wait");
});
