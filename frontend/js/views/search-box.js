// The top bar's search: results as you type (a listbox under the box: arrow keys move, Enter opens, Escape
// closes), Enter with none chosen opens the search page, and "/" anywhere focuses the box.

import { searchUnits } from "../data.js";
import { html } from "../dom.js";
import { navigate } from "../router.js";
import { describeHit, searchable, unitName } from "../search-words.js";
import { pageUrl } from "../urls.js";

const SUGGESTIONS = 8;
const DELAY_MS = 120;

export function mountSearchBox(form) {
  const input = form.querySelector("input[name=q]");
  const list = form.querySelector("[role=listbox]");
  if (matchMedia("(hover: none)").matches) input.placeholder = "Search units";  // a touch screen has no "/" key to press
  let controller = null;
  let timer = null;
  let active = -1;

  const options = () => [...list.querySelectorAll("[role=option]")];
  const close = () => {
    clearTimeout(timer);
    controller?.abort();
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  };
  const highlight = (index) => {
    const all = options();
    active = all.length ? (index + all.length) % all.length : -1;
    all.forEach((option, i) => option.setAttribute("aria-selected", String(i === active)));
    if (active >= 0) input.setAttribute("aria-activedescendant", all[active].id);
  };
  const suggest = async () => {
    controller?.abort();
    const query = { q: input.value.trim(), limit: SUGGESTIONS };
    if (!searchable(query)) return close();
    controller = new AbortController();
    try {
      const found = await searchUnits(query, { signal: controller.signal });
      list.innerHTML = found.results.length ? html`${found.results.map((hit, i) => html`
        <li role="option" id="search-option-${i}" aria-selected="false" data-href="${hit.page}">
          <code>${unitName(hit)}</code> <span class="muted small">${hit.model}</span>
          <span class="small">${describeHit(hit)}</span></li>`)}
        <li role="option" id="search-option-all" aria-selected="false" data-href="${pageUrl.search({ q: query.q })}"
          class="search-all">All ${found.total} result${found.total === 1 ? "" : "s"} →</li>`
        : html`<li class="muted small search-none">No unit matches “${query.q}”.</li>`;
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
      active = -1;
    } catch (error) {
      if (error.name !== "AbortError") {
        list.innerHTML = html`<li class="error-text small">${error.message}</li>`;
        list.hidden = false;
      }
    }
  };
  const open = (href) => {
    close();
    input.blur();
    navigate(href);
  };

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(suggest, DELAY_MS);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (list.hidden) return;
      event.preventDefault();
      highlight(active + (event.key === "ArrowDown" ? 1 : -1));
    } else if (event.key === "Escape") {
      close();
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = options()[active];
    if (chosen) return open(chosen.dataset.href);
    const q = input.value.trim();
    if (searchable({ q })) open(pageUrl.search({ q }));
  });
  list.addEventListener("mousedown", (event) => event.preventDefault());  // keep the focus in the box
  list.addEventListener("click", (event) => {
    const option = event.target.closest("[role=option]");
    if (option) open(option.dataset.href);
  });
  input.addEventListener("blur", () => setTimeout(() => { if (document.activeElement !== input) close(); }, 100));
  document.addEventListener("keydown", (event) => {
    if (event.key !== "/" || event.target.closest("input, textarea, select, [contenteditable]")) return;
    event.preventDefault();
    input.focus();
    input.select();
  });
}
