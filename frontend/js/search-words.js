// What the search box and page share, pure (unit-tested under node): how a result is described in words,
// and whether a query has anything to search for (the server's rule: letters or digits, or a filter).

const FIELD_WORDS = {
  note: "note", label: "label", formula: "formula", concept: "also", class: "class", description: "described",
  unit: "unit",
};

export function searchable(query) {
  return /[a-z0-9]/i.test(query.q ?? "") || Boolean(query.category || query.concept || query.class);
}

/** "label: shape:square (IoU 0.16)", "class square (AUC 0.97)", "note: corners" ... */
export function describeHit(hit) {
  const field = FIELD_WORDS[hit.field] ?? hit.field;
  if (hit.field === "label" || hit.field === "concept") {  // the text is "category:name name"
    return `${field}: ${hit.text.split(" ")[0]} (IoU ${hit.score.toFixed(2)})`;
  }
  if (hit.field === "formula") return `${field}: ${hit.text} (IoU ${hit.score.toFixed(2)})`;
  if (hit.field === "class") return `${hit.text} (AUC ${hit.score.toFixed(2)})`;
  if (hit.field === "unit") return hit.label ? `label: ${hit.label}` : "no label";
  return `${field}: ${hit.text}`;
}

export const unitName = (hit) => (hit.kind && hit.kind !== "channel" ? `${hit.layer} ${hit.kind}:${hit.unit}`
  : `${hit.layer}:${hit.unit}`);
