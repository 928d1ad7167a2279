// What a layer or unit page shows when there is no atlas yet: the command to build one, or the progress
// of the build under way (re-checked every few seconds).

import { html } from "../dom.js";

export function atlasProblem(root, error, { title, signal }) {
  const building = error.status === 409 && /being built/.test(error.message);
  root.innerHTML = html`<section class="problem">
    <h1><code>${title}</code></h1>
    <p class="${building ? "muted" : "error-text"}">${error.message}</p>
    ${building ? html`<p class="muted building">This page reloads when the atlas is ready.</p>` : ""}
  </section>`;
  if (building) {
    const timer = setTimeout(() => window.dispatchEvent(new Event("fovea:navigate")), 3000);
    signal.addEventListener("abort", () => clearTimeout(timer));
  }
}
