// The search page (/search?q=...): units of every model found by their labels, formulas, classes,
// descriptions, notes and names, each with its top image, best match first, a page at a time.

import { searchUnits } from "../data.js";
import { html } from "../dom.js";
import { navigate } from "../router.js";
import { describeHit, searchable, unitName } from "../search-words.js";
import { pageUrl } from "../urls.js";

const PAGE = 24;
const FILTERS = ["model", "dataset", "layer", "kind", "category", "concept", "class"];

export async function mountSearch(root, { query, signal }) {
  const q = query.q ?? "";
  const offset = Math.max(Number(query.offset) || 0, 0);
  const filters = Object.fromEntries(FILTERS.filter((key) => query[key]).map((key) => [key, query[key]]));
  const meta = { title: q ? `Search: ${q}` : "Search", crumbs: [{ label: "Search", href: pageUrl.search(query) }] };
  root.innerHTML = html`
    <section class="page-head">
      <h1>Search units</h1>
      <form class="search-page-form" role="search">
        <input type="search" name="q" value="${q}" aria-label="Words to search for" placeholder="square, red AND stripes, block4:167, a note…">
        <button class="button" type="submit">Search</button>
      </form>
      ${Object.keys(filters).length ? html`<p class="small">Only units with ${Object.entries(filters).map(([key, value], i) =>
        html`${i ? ", " : ""}${key} <code>${value}</code>`)} · <a href="${pageUrl.search({ q })}">search everything</a></p>` : ""}
      <p class="muted small">Words match the start of words in what is known of each unit: its concept label and
        the other concepts it overlaps, its compositional label, the classes it selects, its description, notes
        people wrote, and its name. Notes people wrote come first, then measured labels, each ranked by its score.</p>
    </section>
    <div class="search-results-page"></div>`;
  root.querySelector(".search-page-form").addEventListener("submit", (event) => {
    event.preventDefault();
    navigate(pageUrl.search({ ...filters, q: event.target.q.value.trim() }));
  }, { signal });
  const body = root.querySelector(".search-results-page");
  const asked = { q, ...filters, offset, limit: PAGE };
  if (!searchable(asked)) {
    body.innerHTML = html`<p class="muted">Type a word above, or press <kbd>/</kbd> anywhere to search from the top bar.</p>`;
    return meta;
  }
  const found = await searchUnits(asked, { signal });
  const last = Math.min(offset + found.results.length, found.total);
  body.innerHTML = found.total ? html`
    <p class="muted small" aria-live="polite">${found.total} unit${found.total === 1 ? "" : "s"}${found.total > PAGE ? `, ${offset + 1} to ${last}` : ""}</p>
    <ol class="search-results" start="${offset + 1}">${found.results.map((hit) => html`
      <li class="search-result">
        <a href="${hit.page}" class="search-thumb" tabindex="-1" aria-hidden="true">${hit.image
          ? html`<img src="${hit.image}" width="72" height="72" alt="" loading="lazy">` : html`<span class="no-thumb"></span>`}</a>
        <div><a href="${hit.page}"><code>${unitName(hit)}</code></a> <span class="muted small">${hit.model}${hit.dataset ? ` · ${hit.dataset}` : ""}</span>
          <div class="small">${describeHit(hit)}</div>
          ${hit.label && hit.field !== "label" ? html`<span class="chip small">${hit.label}</span>` : ""}</div>
      </li>`)}</ol>
    <nav class="pager" aria-label="Pages of results">
      ${offset > 0 ? html`<a class="button" href="${pageUrl.search({ ...filters, q, offset: Math.max(offset - PAGE, 0) || null })}" rel="prev">← Previous</a>` : ""}
      ${last < found.total ? html`<a class="button" href="${pageUrl.search({ ...filters, q, offset: offset + PAGE })}" rel="next">Next →</a>` : ""}
    </nav>`
    : html`<p>No unit matches <b>${q}</b>${Object.keys(filters).length ? " with these filters" : ""}. Labels exist where a model
      was dissected on a dataset with concept labels (<code>fovea dissect</code>); the demo models are, on first start.</p>`;
  return meta;
}
