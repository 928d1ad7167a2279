"""Reading a unit's labels from its atlas (written by app/atlas/dissection.py): its best concepts by IoU, its
label (the best, when it reaches the IoU threshold setting), its compositional label, its most selective
classes, and a one-sentence description built from those numbers by a fixed template."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from app.atlas.kinds import CHANNEL
from app.atlas.reader import Atlas, AtlasLayer

DESCRIBED_BY = ("a fixed template over the measured numbers (NetDissect IoU, compositional IoU, ROC AUC), "
                "not a language model")


@dataclass(frozen=True)
class ConceptScore:
    id: str  # category:name
    name: str
    category: str
    iou: float

    def json(self) -> dict:
        return {"id": self.id, "name": self.name, "category": self.category, "iou": self.iou}


def has_labels(atlas: Atlas) -> bool:
    return bool(atlas.meta.get("dissection"))


def class_source(atlas: Atlas) -> str | None:
    """What the atlas's class AUCs score units against: "labels" (the images' classes), "predictions" (the classes
    the model predicts for them), or None."""
    meta = atlas.meta["dissection"]
    return meta.get("class_source", "labels") if meta["classes"] else None


def layer_labels(atlas: Atlas, layer: AtlasLayer, iou_threshold: float, auc_threshold: float) -> dict[int, dict]:
    """Each labelled unit's label chip: its best concept, where the IoU reaches `iou_threshold`, else the class it
    selects, where its best class's ROC AUC reaches `auc_threshold` (on a dataset of classes alone, the only
    label there is)."""
    if not has_labels(atlas):
        return {}
    classes = atlas.query("SELECT unit, class, auc FROM unit_classes WHERE layer = ? AND rank = 0 AND auc >= ?",
                          (layer.idx, auc_threshold))
    concepts = atlas.query("SELECT uc.unit, c.id, c.name, c.category, uc.iou FROM unit_concepts uc JOIN concepts c "
                           "ON c.idx = uc.concept WHERE uc.layer = ? AND uc.rank = 0 AND uc.iou >= ?",
                           (layer.idx, iou_threshold))
    category = "predicted class" if class_source(atlas) == "predictions" else "class"
    return {row["unit"]: {"id": f"class:{row['class']}", "name": row["class"], "category": category, "iou": None,
                          "auc": row["auc"]} for row in classes} | {
        row["unit"]: {"id": row["id"], "name": row["name"], "category": row["category"], "iou": row["iou"],
                      "auc": None} for row in concepts}


_CONCEPTS = ("SELECT uc.layer, uc.unit, c.id, c.name, c.category, uc.iou FROM unit_concepts uc "
             "JOIN concepts c ON c.idx = uc.concept")
_REGIONS = "SELECT layer, unit, threshold, region_pixels, formula, formula_iou FROM unit_dissection"
_CLASSES = "SELECT layer, unit, class, auc FROM unit_classes"


def unit_labels(atlas: Atlas, layer: AtlasLayer, unit: int, iou_threshold: float,
                auc_threshold: float) -> dict | None:
    """Everything the dissection measured of one unit, or None when the atlas has no labels; with the AUC from
    which its best class counts as what it selects."""
    if not has_labels(atlas):
        return None
    params = (layer.idx, unit)
    return _labels(atlas, iou_threshold, auc_threshold,
                   atlas.query(_CONCEPTS + " WHERE uc.layer = ? AND uc.unit = ? ORDER BY uc.rank", params),
                   atlas.query(_REGIONS + " WHERE layer = ? AND unit = ?", params),
                   atlas.query(_CLASSES + " WHERE layer = ? AND unit = ? ORDER BY rank", params))


def all_unit_labels(atlas: Atlas, iou_threshold: float, auc_threshold: float) -> dict[tuple[int, int], dict]:
    """unit_labels of every unit of the atlas, by (layer index, unit), in three queries."""
    if not has_labels(atlas):
        return {}
    grouped: dict[tuple[int, int], tuple[list, list, list]] = {}
    for part, sql in enumerate((_CONCEPTS + " ORDER BY uc.layer, uc.unit, uc.rank", _REGIONS,
                                _CLASSES + " ORDER BY layer, unit, rank")):
        for row in atlas.query(sql):
            grouped.setdefault((row["layer"], row["unit"]), ([], [], []))[part].append(row)
    return {key: _labels(atlas, iou_threshold, auc_threshold, *parts) for key, parts in grouped.items()}


def _labels(atlas: Atlas, iou_threshold: float, auc_threshold: float, concept_rows, region_rows, class_rows) -> dict:
    concepts = [ConceptScore(r["id"], r["name"], r["category"], r["iou"]) for r in concept_rows]
    label = concepts[0] if concepts and concepts[0].iou >= iou_threshold else None
    region = region_rows[0] if region_rows else None
    labels = {
        "dataset": atlas.dataset,
        "layout": atlas.meta["dissection"].get("layout"),
        "iou_threshold": iou_threshold,
        "auc_threshold": auc_threshold,
        "label": label.json() if label else None,
        "concepts": [c.json() for c in concepts],
        "formula": {"text": region["formula"], "iou": region["formula_iou"]} if region and region["formula"] else None,
        "classes": [{"class": r["class"], "auc": r["auc"]} for r in class_rows],
        "class_source": class_source(atlas),
        "threshold": region["threshold"] if region else None,
        "region_pixels": region["region_pixels"] if region else None,
    }
    labels["description"] = describe(labels)
    labels["described_by"] = DESCRIBED_BY
    return labels


def describe(labels: dict) -> str:
    """One sentence from the measured numbers, e.g. "square (IoU 0.31), mostly red (0.12); top class square,
    AUC 0.97". Concepts and a best class below their thresholds are named as the closest, not as what the unit
    detects or selects (an AUC of 0.6 is near chance)."""
    return "; ".join(text for text, _ in description_parts(labels)) or "no class or concept measured"


def description_parts(labels: dict) -> list[tuple[str, float]]:
    """The description's clauses, each with the number it reports (an IoU or an AUC): what search ranks a unit
    by when its words match that clause."""
    threshold = labels["iou_threshold"]
    parts = []
    concepts = [c for c in labels["concepts"] if c["iou"] >= threshold]
    if concepts:
        first = concepts[0]
        other = next((c for c in concepts[1:] if c["category"] != first["category"]), None)
        parts.append((f"{first['name']} (IoU {first['iou']:.2f})"
                      + (f", mostly {other['name']} ({other['iou']:.2f})" if other else ""), first["iou"]))
    formula = labels["formula"]
    if formula and concepts and formula["iou"] > concepts[0]["iou"] * 1.1:
        parts.append((f"better as {formula['text']} (IoU {formula['iou']:.2f})", formula["iou"]))
    if labels["classes"] and labels["classes"][0]["auc"] >= 0.5:
        best = labels["classes"][0]
        kind = "predicted class" if labels["class_source"] == "predictions" else "class"
        if best["auc"] >= labels["auc_threshold"]:
            parts.append((f"top {kind} {best['class']}, AUC {best['auc']:.2f}", best["auc"]))
        else:
            parts.append((f"no {kind} reaches AUC {labels['auc_threshold']:g} (closest: {best['class']}, "
                           f"{best['auc']:.2f})", best["auc"]))
    if not concepts and labels["layout"] is not None:  # a dataset of classes only has no concepts to name
        closest = next((c for c in labels["concepts"] if c["iou"] > 0), None)
        parts.insert(0, (f"no concept reaches IoU {threshold:g}"
                         + (f" (closest: {closest['name']}, {closest['iou']:.3f})" if closest else ""),
                         closest["iou"] if closest else 0.0))
    return parts


def detector_summary(atlas: Atlas, iou_threshold: float, auc_threshold: float) -> dict:
    """NetDissect's summary of an atlas with labels: per layer and kind of unit (channels, each dictionary's
    features), its units labelled with a concept of each category, the distinct concepts of each category, each
    label concept's units, and the mean of every unit's best IoU (what compares a dictionary with the channels);
    per concept, its pixels, images, and labelled channels and dictionary features in all layers. Where the
    images have classes, the same for class selectivity: per layer, the units whose best class reaches
    `auc_threshold`, their classes and the mean best AUC."""
    meta = atlas.meta["dissection"]
    categories = meta["categories"]
    labels = atlas.query("SELECT uc.layer, c.id, c.category FROM unit_concepts uc JOIN concepts c "
                         "ON c.idx = uc.concept WHERE uc.rank = 0 AND uc.iou >= ?", (iou_threshold,))
    best = dict(atlas.query("SELECT layer, AVG(iou) FROM unit_concepts WHERE rank = 0 GROUP BY layer"))
    selective = atlas.query("SELECT layer, class FROM unit_classes WHERE rank = 0 AND auc >= ?", (auc_threshold,))
    best_auc = dict(atlas.query("SELECT layer, AVG(auc) FROM unit_classes WHERE rank = 0 GROUP BY layer"))
    layers = []
    for layer in atlas.by_kind.values():
        rows = [row for row in labels if row["layer"] == layer.idx]
        per_concept = Counter(row["id"] for row in rows)
        per_class = Counter(row["class"] for row in selective if row["layer"] == layer.idx)
        layers.append({
            "layer": layer.name, "kind": layer.kind, "units": layer.units, "labelled_units": len(rows),
            "best_iou_mean": best.get(layer.idx),
            "labelled": {c: sum(row["category"] == c for row in rows) for c in categories},
            "unique": {c: len({row["id"] for row in rows if row["category"] == c}) for c in categories},
            "concepts": [{"id": concept, "units": count} for concept, count in _most_first(per_concept)],
            "selective_units": per_class.total(),
            "best_auc_mean": best_auc.get(layer.idx),
            "selective_classes": [{"class": name, "units": count} for name, count in _most_first(per_class)],
        })
    channel_layers = {layer.idx for layer in atlas.by_kind.values() if layer.kind == CHANNEL}
    channels = Counter(row["id"] for row in labels if row["layer"] in channel_layers)
    features = Counter(row["id"] for row in labels if row["layer"] not in channel_layers)
    concepts = [{"id": r["id"], "name": r["name"], "category": r["category"], "pixels": r["pixels"],
                 "images": r["images"], "units": channels.get(r["id"], 0), "features": features.get(r["id"], 0)}
                for r in atlas.query("SELECT id, name, category, pixels, images FROM concepts ORDER BY idx")]
    size = meta.get("size")
    pixels = atlas.meta["readable"] * size[0] * size[1] if size else None  # every image's label map
    return {"dataset": atlas.dataset, "layout": meta.get("layout"), "iou_threshold": iou_threshold,
            "pixels": pixels, "region_fraction": round(1 - atlas.meta["region_quantile"], 6),
            "auc_threshold": auc_threshold, "categories": categories, "classes": meta["classes"],
            "class_source": class_source(atlas),
            "unscored_classes": meta.get("unscored_classes", {}), "min_class_images": meta.get("min_class_images"),
            "layers": layers, "concepts": concepts}


def _most_first(counts: Counter) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def class_selectivity_summary(atlas: Atlas, levels: tuple[float, ...]) -> list[dict]:
    """Per layer, how many units' most selective class reaches each ROC AUC of `levels`."""
    best = atlas.query("SELECT layer, auc FROM unit_classes WHERE rank = 0")
    return [{"layer": layer.name, "kind": layer.kind, "units": layer.units,
             "reaching": [sum(row["auc"] >= level for row in best if row["layer"] == layer.idx) for level in levels]}
            for layer in atlas.by_kind.values()]
