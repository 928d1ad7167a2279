// Every URL the front end uses, built and parsed in one place. Pure: unit-tested under node.

const enc = encodeURIComponent;
// Image ids keep their colon (`demo:17`): it is legal in a path segment and reads better in a shared link.
const encImage = (imageId) => enc(imageId).replace(/%3A/gi, ":");

// A unit is (model, layer, kind, index). Page paths carry a kind other than a channel as a segment of their
// own (`/m/{model}/{layer}/{kind}/{unit}`, as app/api/links.py writes them); a channel's paths leave it out.
// The API takes the kind as a query parameter, which the views pass in the same query object.
export const CHANNEL = "channel";
const kindPath = (modelId, layer, kind) =>
  `/m/${enc(modelId)}/${enc(layer)}${kind && kind !== CHANNEL ? `/${enc(kind)}` : ""}`;

/** What every request and link of an atlas page names: the atlas's dataset and the kind of its units (left out
 *  for a channel). A page path takes the kind into the path; an API URL keeps it as a query parameter. */
export function atlasQuery({ dataset, kind }) {
  return { dataset, ...(kind && kind !== CHANNEL ? { kind } : {}) };
}

export const pageUrl = {
  home: () => "/",
  model: (modelId, query = {}) => withQuery(`/m/${enc(modelId)}`, query),
  layer: (modelId, layer, { kind, ...query } = {}) => withQuery(kindPath(modelId, layer, kind), query),
  unit: (modelId, layer, unit, { kind, ...query } = {}) => withQuery(`${kindPath(modelId, layer, kind)}/${unit}`, query),
  // An upload id, or a dataset image written `dataset:id`.
  image: (imageId, query = {}) => withQuery(`/image/${encImage(imageId)}`, query),
  upload: () => "/image",
  // Units found by words or label filters (q, model, layer, category, concept, offset).
  search: (query = {}) => withQuery("/search", query),
  // A model's detectors: its units labelled with concepts, per layer and category.
  concepts: (modelId, query = {}) => withQuery(`/m/${enc(modelId)}/concepts`, query),
};

export const apiUrl = {
  health: () => "/api/health",
  models: () => "/api/models",
  model: (modelId) => `/api/models/${enc(modelId)}`,
  atlases: (modelId) => `/api/models/${enc(modelId)}/atlases`,
  units: (modelId, layer, query = {}) => withQuery(`/api/models/${enc(modelId)}/layers/${enc(layer)}/units`, query),
  unit: (modelId, layer, unit, query = {}) =>
    withQuery(`/api/models/${enc(modelId)}/layers/${enc(layer)}/units/${unit}`, query),
  visualization: (modelId, layer, unit, query = {}) =>
    withQuery(`/api/models/${enc(modelId)}/layers/${enc(layer)}/units/${unit}/visualization`, query),
  visualizationPng: (modelId, layer, unit, query = {}) =>
    withQuery(`/api/models/${enc(modelId)}/layers/${enc(layer)}/units/${unit}/visualization.png`, query),
  visualizationFacets: (modelId, layer, unit, query = {}) =>
    withQuery(`/api/models/${enc(modelId)}/layers/${enc(layer)}/units/${unit}/visualization/facets`, query),
  unitMaps: (modelId, layer, unit, query = {}) =>
    withQuery(`/api/models/${enc(modelId)}/layers/${enc(layer)}/units/${unit}/maps`, query),
  // With a model: the image as that model sees it (resized and cropped), which its maps cover exactly.
  images: () => "/api/images",
  image: (imageId) => `/api/images/${encImage(imageId)}`,
  imageFile: (imageId, model = null) => withQuery(`/api/images/${encImage(imageId)}/file`, { model }),
  predictions: (imageId, query = {}) => withQuery(`/api/images/${encImage(imageId)}/predictions`, query),
  cam: (imageId, query = {}) => withQuery(`/api/images/${encImage(imageId)}/cam`, query),
  methods: () => "/api/methods",
  statistics: () => "/api/statistics",
  progress: (token) => `/api/progress/${enc(token)}`,
  firedUnits: (imageId, query = {}) => withQuery(`/api/images/${encImage(imageId)}/units`, query),
  datasetSamples: (dataset) => `/api/datasets/${enc(dataset)}/samples`,
  search: (query = {}) => withQuery("/api/search", query),
  concepts: (modelId, query = {}) => withQuery(`/api/models/${enc(modelId)}/concepts`, query),
  dictionaries: (modelId, query = {}) => withQuery(`/api/models/${enc(modelId)}/dictionaries`, query),
  conceptMask: (modelId, concept, image, query = {}) =>
    withQuery(`/api/models/${enc(modelId)}/concepts/${enc(concept)}/masks/${image}.png`, query),
  notes: (modelId, layer, unit, query = {}) =>
    withQuery(`/api/models/${enc(modelId)}/layers/${enc(layer)}/units/${unit}/notes`, query),
  datasetImage: (dataset, imageId, model = null) =>
    `/api/datasets/${enc(dataset)}/images/${imageId}${model ? `?model=${enc(model)}` : ""}`,
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

// A kind of unit as the server names them (app/atlas/kinds.py): "channel", a dictionary's "sae-384".
const UNIT_KIND = /^[a-z][a-z0-9-]{0,31}$/;

/** Which view a location shows: { view, params, query }. Unknown paths give view "notfound", with a `reason`
 *  where the path is almost a page's. */
export function parseRoute(pathname, search = "") {
  const query = Object.fromEntries(new URLSearchParams(search));
  const parts = pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return { view: "home", params: {}, query };
  if (parts[0] === "m" && parts.length === 2) return { view: "model", params: { model: parts[1] }, query };
  if (parts[0] === "m" && parts.length === 3 && parts[2] === "concepts") {
    return { view: "concepts", params: { model: parts[1] }, query };
  }
  if (parts[0] === "m" && parts.length === 3) {
    return { view: "layer", params: { model: parts[1], layer: parts[2] }, query };
  }
  if (parts[0] === "m" && parts.length === 4 && /^\d+$/.test(parts[3])) {
    return { view: "unit", params: { model: parts[1], layer: parts[2], unit: Number(parts[3]) }, query };
  }
  if (parts[0] === "m" && parts.length === 4 && UNIT_KIND.test(parts[3])) {  // a layer's units of another kind
    return { view: "layer", params: { model: parts[1], layer: parts[2] }, query: { ...query, kind: parts[3] } };
  }
  if (parts[0] === "m" && parts.length === 5 && UNIT_KIND.test(parts[3]) && /^\d+$/.test(parts[4])) {
    return { view: "unit", params: { model: parts[1], layer: parts[2], unit: Number(parts[4]) },
      query: { ...query, kind: parts[3] } };
  }
  if (parts[0] === "m" && (parts.length === 4 || parts.length === 5)) {  // "-1", "1.5", a kind mistyped
    const example = pageUrl.unit(parts[1], parts[2], 0);
    return { view: "notfound", params: { path: pathname, reason: `No unit "${parts.slice(3).join("/")}" in ` +
      `${parts[2]}: a unit is a number from 0 (${example}), or a kind of unit and a number.` }, query };
  }
  if (parts[0] === "search" && parts.length === 1) return { view: "search", params: {}, query };
  if (parts[0] === "image" && parts.length === 1) return { view: "upload", params: {}, query };
  if (parts[0] === "image" && parts.length === 2) return { view: "image", params: { image: parts[1] }, query };
  return { view: "notfound", params: { path: pathname }, query };
}
