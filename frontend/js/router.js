// Path routing with the History API: links navigate without reloads, back/forward re-render, and every
// view is reproduced from its URL alone.

import { parseRoute } from "./urls.js";

export function startRouter(render) {
  const controller = new AbortController();
  const { signal } = controller;

  const show = () => render(parseRoute(location.pathname, location.search));

  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[href]");
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || link.target) return;
    const url = new URL(link.href, location.href);
    if (url.origin !== location.origin || !isPage(url.pathname)) return;
    event.preventDefault();
    navigate(url.pathname + url.search);
  }, { signal });

  window.addEventListener("popstate", show, { signal });
  window.addEventListener("fovea:navigate", show, { signal });
  show();
  return () => controller.abort();
}

/**
 * Go to a page URL, adding a history entry, or replacing the current one (view state kept in the URL,
 * the view itself already up to date unless `rerender`).
 */
export function navigate(url, { replace = false, rerender = !replace } = {}) {
  if (url === location.pathname + location.search) return;
  history[replace ? "replaceState" : "pushState"](null, "", url);
  if (rerender) window.dispatchEvent(new Event("fovea:navigate"));
}

function isPage(pathname) {
  return pathname === "/" || pathname.startsWith("/m/") || pathname === "/image" || pathname.startsWith("/image/");
}
