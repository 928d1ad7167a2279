// The layer and unit pages' way around: the previous and next indexed layer, and a box that goes to any
// unit (`476`, or `block3:12` for another layer's).

import { html } from "../dom.js";
import { neighbourLayers, parseUnitJump } from "../layer-nav.js";
import { navigate } from "../router.js";
import { pageUrl } from "../urls.js";

/**
 * Fill `element`. `order`: the indexed layers' names in the model's order; `total`: this layer's units;
 * `layerQuery` and `unitQuery()`: what links to a layer page and to a unit page carry (a unit's view options).
 */
export function mountLayerBar(element, { modelId, layer, total, order, layerQuery = {}, unitQuery = () => ({}), signal }) {
  const { previous, next } = neighbourLayers(order, layer);
  const position = order.indexOf(layer);
  element.innerHTML = html`<nav class="layer-bar" aria-label="Layers and units">
    ${previous ? html`<a class="button" href="${pageUrl.layer(modelId, previous, layerQuery)}" data-step="previous-layer"
      aria-label="Previous layer: ${previous}">← <code>${previous}</code></a>` : ""}
    ${position >= 0 ? html`<span>layer ${position + 1} of ${order.length}</span>` : ""}
    ${next ? html`<a class="button" href="${pageUrl.layer(modelId, next, layerQuery)}" data-step="next-layer"
      aria-label="Next layer: ${next}"><code>${next}</code> →</a>` : ""}
    <form class="unit-jump" novalidate>
      <label for="unit-jump">Go to unit</label>
      <input id="unit-jump" name="jump" type="text" inputmode="numeric" autocomplete="off" spellcheck="false"
        placeholder="0 to ${total - 1}" aria-describedby="unit-jump-error">
      <button class="button" type="submit">Go</button>
      <span id="unit-jump-error" class="error-text" role="alert"></span>
    </form>
  </nav>`;
  const form = element.querySelector(".unit-jump");
  const field = form.querySelector("input");
  const problem = form.querySelector(".error-text");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const target = parseUnitJump(field.value, { layer, total, layers: order });
    problem.textContent = target.error ?? "";
    if (target.error) {
      field.setAttribute("aria-invalid", "true");
      return;
    }
    // A dictionary's features belong to their layer: on another layer the unit is a channel.
    const { kind, ...query } = unitQuery();
    navigate(pageUrl.unit(modelId, target.layer, target.unit, target.layer === layer ? { kind, ...query } : query));
  }, { signal });
  field.addEventListener("input", () => {
    field.removeAttribute("aria-invalid");
    problem.textContent = "";
  }, { signal });
}
