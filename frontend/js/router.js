// Path routing with the History API: links navigate without reloads, back/forward re-render, and every
// view is reproduced from its URL alone. Each history entry remembers where it was scrolled to.

import { parsePositions, rememberScroll } from "./scroll-memory.js";
import { parseRoute } from "./urls.js";

const POSITIONS = "fovea:scroll";
let entry = null;  // this history entry's key in the remembered positions

/**
 * Call `render(route, { cause, scroll })` for every page shown: `cause` is "load", "push" (a link),
 * "pop" (back or forward), or "refresh" (the same page again, its state changed); `scroll` is where to
 * scroll once the view is drawn (null: leave it).
 */
export function startRouter(render) {
  const controller = new AbortController();
  const { signal } = controller;
  history.scrollRestoration = "manual";
  entry = history.state?.entry ?? null;
  if (!entry) replaceEntry(newEntry());

  const show = (cause, scroll) => render(parseRoute(location.pathname, location.search), { cause, scroll });

  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[href]");
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || link.target) return;
    const url = new URL(link.href, location.href);
    if (url.origin !== location.origin || !isPage(url.pathname)) return;
    event.preventDefault();
    if (url.hash && url.pathname === location.pathname && url.search === location.search) {
      // An in-page link (the skip link): focus its target, without a history entry or a re-render.
      document.getElementById(decodeURIComponent(url.hash.slice(1)))?.focus();
      return;
    }
    navigate(url.pathname + url.search);
  }, { signal });

  window.addEventListener("popstate", (event) => {
    saveScroll();  // the entry being left: the page has not changed yet
    entry = event.state?.entry ?? null;
    if (!entry) replaceEntry(newEntry());
    show("pop", positions()[entry] ?? 0);
  }, { signal });
  window.addEventListener("fovea:navigate", (event) => {
    if (event.detail?.push) show("push", 0);
    else show("refresh", null);
  }, { signal });
  window.addEventListener("pagehide", saveScroll, { signal });  // a reload comes back to the same place
  show("load", positions()[entry] ?? null);
  return () => controller.abort();
}

/**
 * Go to a page URL, adding a history entry, or replacing the current one (view state kept in the URL,
 * the view itself already up to date unless `rerender`).
 */
export function navigate(url, { replace = false, rerender = !replace } = {}) {
  if (url === location.pathname + location.search) return;
  if (replace) {
    history.replaceState({ ...history.state, entry }, "", url);
  } else {
    saveScroll();
    entry = newEntry();
    history.pushState({ entry }, "", url);
  }
  if (rerender) window.dispatchEvent(new CustomEvent("fovea:navigate", { detail: { push: !replace } }));
}

function isPage(pathname) {
  return pathname === "/" || pathname.startsWith("/m/") || pathname === "/image" || pathname.startsWith("/image/")
    || pathname === "/search";
}

// Keys are never integer-like: objects keep those first, and the oldest-first order would break.
const newEntry = () => `e${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;

function replaceEntry(key) {
  entry = key;
  history.replaceState({ ...history.state, entry }, "", location.href);
}

function positions() {
  try {
    return parsePositions(sessionStorage.getItem(POSITIONS));
  } catch {
    return {};  // storage refused (a privacy setting): back and forward start at the top
  }
}

function saveScroll() {
  if (!entry) return;
  try {
    sessionStorage.setItem(POSITIONS, JSON.stringify(rememberScroll(positions(), entry, window.scrollY)));
  } catch {
    // storage refused or full: nothing to restore later, nothing else lost
  }
}
