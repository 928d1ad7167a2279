// What a layer is, from its place among the model's modules (layer-nav.js), as HTML with names in code.

import { html } from "../dom.js";
import { describeLayer } from "../layer-nav.js";

export function layerRole(layers, name) {
  return html`${describeLayer(layers, name).map((part) => (typeof part === "string" ? part : html`<code>${part.code}</code>`))}`;
}
