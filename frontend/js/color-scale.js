// A heatmap's colour scale: the colormap from its low end to its high end, each end labelled, a mark
// where the outlined region begins, and a sentence saying what the scale covers.

import { html } from "./dom.js";
import { drawColorbar } from "./maps.js";

/**
 * Show the scale in `element` (redrawn whole on each call), its colours faded as maps drawn with `gamma` are. `from` and `to` label the ends; `mark`, a
 * fraction of the bar (or null), shows where the outline's level sits; `note` says what is scaled how.
 */
export function renderColorScale(element, { colormap, gamma, from, to, mark = null, markLabel = "", note }) {
  const at = mark === null ? null : Math.min(Math.max(mark, 0), 1);
  element.innerHTML = html`<div class="color-scale">
    <span class="scale-end">${from}</span>
    <span class="scale-bar"><canvas width="256" height="1" aria-hidden="true"></canvas>${at === null ? ""
      : html`<span class="scale-mark" style="left: ${(at * 100).toFixed(1)}%" title="${markLabel}"></span>`}</span>
    <span class="scale-end">${to}</span>
    <span class="scale-note">${note}</span></div>`;
  drawColorbar(element.querySelector("canvas"), colormap, { gamma });
}
