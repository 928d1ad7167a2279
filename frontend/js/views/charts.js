// Small SVG charts, drawn from data with every label escaped.

import { html } from "../dom.js";

/** Bars for an activation histogram { edges, counts, zeros }; zeros are reported, not drawn. */
export function histogramChart({ edges, counts, zeros }) {
  const width = 280;
  const height = 90;
  const top = Math.max(...counts, 1);
  const barWidth = width / counts.length;
  const total = counts.reduce((a, b) => a + b, 0) + zeros;
  return html`<figure class="chart">
    <svg viewBox="0 0 ${width} ${height}" role="img" aria-label="Histogram of activation values">
      ${counts.map((count, i) => {
        const barHeight = Math.max((count / top) * (height - 4), count > 0 ? 1 : 0);
        return html`<rect x="${(i * barWidth).toFixed(2)}" y="${(height - barHeight).toFixed(2)}"
          width="${Math.max(barWidth - 1, 0.5).toFixed(2)}" height="${barHeight.toFixed(2)}"><title>${edges[i].toFixed(3)} to ${edges[i + 1].toFixed(3)}: ${count}</title></rect>`;
      })}
    </svg>
    <figcaption class="muted">Values at sampled positions of every image, counted in bins from ${edges[0].toFixed(2)}
      to ${edges[edges.length - 1].toFixed(2)} (the unit's maximum can lie beyond the sample) ·
      ${total ? ((zeros / total) * 100).toFixed(1) : 0}% exactly zero</figcaption>
  </figure>`;
}

/** Horizontal bars for [{ label, count }]. */
export function barChart(rows) {
  if (!rows.length) return html`<p class="muted">No labels (a flat image folder).</p>`;
  const top = Math.max(...rows.map((r) => r.count));
  return html`<ul class="bars">${rows.map((row) => html`<li>
    <span class="bar-label">${row.label}</span>
    <span class="bar"><span style="width: ${((row.count / top) * 100).toFixed(1)}%"></span></span>
    <span class="bar-count">${row.count}</span></li>`)}</ul>`;
}
