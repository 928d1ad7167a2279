// Every URL the front end uses, built and parsed in one place. Pure: unit-tested under node.

const enc = encodeURIComponent;

export const pageUrl = {
  home: () => "/",
  model: (modelId, query = {}) => withQuery(`/m/${enc(modelId)}`, query),
};

export const apiUrl = {
  health: () => "/api/health",
  models: () => "/api/models",
  model: (modelId) => `/api/models/${enc(modelId)}`,
};

/** Append the non-empty entries of `query`, in a stable order, so equal views have equal URLs. */
export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const key of Object.keys(query).sort()) {
    const value = query[key];
    if (value !== undefined && value !== null && value !== "" && value !== false) {
      params.set(key, value === true ? "1" : String(value));
    }
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** Which view a location shows: { view, params, query }. Unknown paths give view "notfound". */
export function parseRoute(pathname, search = "") {
  const query = Object.fromEntries(new URLSearchParams(search));
  const parts = pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return { view: "home", params: {}, query };
  if (parts[0] === "m" && parts.length === 2) return { view: "model", params: { model: parts[1] }, query };
  return { view: "notfound", params: { path: pathname }, query };
}
