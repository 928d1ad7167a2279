import assert from "node:assert/strict";
import { test } from "node:test";

import { chipTitle } from "../js/views/unit-labels.js";

test("a label chip's tooltip gives its score, and says when its class is the model's prediction", () => {
  assert.equal(chipTitle({ id: "shape:square", category: "shape", iou: 0.1634, auc: null }), "shape:square, IoU 0.16");
  assert.equal(chipTitle({ id: "class:ring", category: "class", iou: null, auc: 0.951 }), "class:ring, AUC 0.95");
  assert.equal(chipTitle({ id: "class:ring", category: "predicted class", iou: null, auc: 0.951 }),
    "class:ring (the model's predicted class), AUC 0.95");
});
