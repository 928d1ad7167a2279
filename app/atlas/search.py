"""Search over what is known of every unit: labels, other concepts, compositional labels, selective classes,
descriptions, notes and unit names ("block4:167"), across every model's atlases.

Each atlas's units become documents (one per field) in an inverted index of lower-case word tokens, built
once per atlas build and threshold; a query's words match as prefixes ("squ" finds "square"), all of them
in one document. A unit is listed once, for its best field (labels first, then formulas, other concepts,
classes, descriptions, unit names; notes before all), ranked within a field by its measured score."""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from app.atlas.kinds import CHANNEL
from app.atlas.labels import all_unit_labels, description_parts
from app.atlas.notes import Notes
from app.atlas.reader import Atlas
from app.lru import LruCache

FIELDS = ("note", "label", "formula", "concept", "class", "description", "unit")  # ranked in this order
_TOKEN = re.compile(r"[a-z0-9]+")
# "AND NOT c" in a formula: the unit does not fire on c, so a search for c should not find it there.
_NEGATED = re.compile(r"AND NOT [^()]+?(?=\)| AND | OR |$)")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class Document:
    model: str
    dataset: str | None  # None for a note (it belongs to the unit, on any atlas)
    layer: str
    kind: str
    unit: int
    field: str
    text: str
    score: float  # IoU, AUC, or 1 for a note or a unit's name
    label: str | None  # the unit's label concept, for the category and concept filters
    category: str | None
    top_image: int | None
    words: str | None = None  # what a query matches, when not all of `text`
    selects: str | None = None  # the class the unit selects (best AUC at the threshold), for the class filter
    dictionary: str = ""  # a note on a feature: the digest of the dictionary it was written on


class TokenIndex:
    def __init__(self, documents: list[Document]):
        self.documents = documents
        postings: dict[str, set[int]] = {}
        for i, document in enumerate(documents):
            for token in set(tokens(document.text if document.words is None else document.words)):
                postings.setdefault(token, set()).add(i)
        self._vocabulary = sorted(postings)
        self._postings = postings

    def match(self, words: list[str]) -> set[int]:
        """Documents in which every word is the prefix of some token."""
        found: set[int] | None = None
        for word in words:
            start = bisect.bisect_left(self._vocabulary, word)
            stop = bisect.bisect_left(self._vocabulary, word + "\uffff")
            hits = set().union(*(self._postings[token] for token in self._vocabulary[start:stop]))
            found = hits if found is None else found & hits
            if not found:
                return set()
        return found if found is not None else set(range(len(self.documents)))


def class_text(name: str, labels: dict) -> str:
    """A class hit's words: "class ring", or "predicted class ring" where the classes are the model's predictions."""
    return f"{'predicted ' if labels['class_source'] == 'predictions' else ''}class {name}"


def atlas_documents(atlas: Atlas, iou_threshold: float, auc_threshold: float) -> list[Document]:
    documents = []
    top_images = {(row["layer"], row["unit"]): row["top_image"] for row in atlas.query(
        "SELECT layer, unit, top_image FROM units")}
    every = all_unit_labels(atlas, iou_threshold, auc_threshold)
    for layer in atlas.by_kind.values():
        for unit in range(layer.units):
            top = top_images.get((layer.idx, unit))
            base = dict(model=atlas.model, dataset=atlas.dataset, layer=layer.name, kind=layer.kind, unit=unit,
                        top_image=top)
            labels = every.get((layer.idx, unit))
            label = (labels or {}).get("label")
            best_class = labels["classes"][0] if labels and labels["classes"] else None
            base.update(label=label["id"] if label else None, category=label["category"] if label else None,
                        selects=best_class["class"] if best_class and best_class["auc"] >= auc_threshold else None)
            kind = "" if layer.kind == CHANNEL else f" {layer.kind} feature"
            documents.append(Document(**base, field="unit", text=f"{layer.name}:{unit} {layer.name}{kind} {unit}",
                                      score=1.0))
            if labels is None:
                continue
            for rank, concept in enumerate(labels["concepts"]):
                if concept["iou"] >= iou_threshold:
                    documents.append(Document(**base, field="label" if rank == 0 else "concept",
                                              text=f"{concept['id']} {concept['name']}", score=concept["iou"]))
            if labels["formula"]:
                formula = labels["formula"]["text"]
                documents.append(Document(**base, field="formula", text=formula, score=labels["formula"]["iou"],
                                          words=_NEGATED.sub("", formula)))
            for selective in labels["classes"]:
                if selective["auc"] >= auc_threshold:  # below it a unit does not select the class (0.5: chance)
                    documents.append(Document(**base, field="class", text=class_text(selective["class"], labels),
                                              score=selective["auc"]))
            for text, score in description_parts(labels):  # a clause's words, ranked by its own number
                documents.append(Document(**base, field="description", text=text, score=score,
                                          words=_NEGATED.sub("", text)))
    return documents


class Search:
    """Indexes cached per atlas build and thresholds (a rebuilt atlas is a new key; a bounded number are
    kept, and concurrent first searches build one once); notes re-indexed when they change. Safe from
    several threads."""

    def __init__(self, atlases_kept: int = 32):
        self._indexes = LruCache(atlases_kept)
        self._notes: tuple[int, TokenIndex] | None = None
        self._lock = threading.Lock()

    def index(self, atlas: Atlas, iou_threshold: float, auc_threshold: float) -> TokenIndex:
        key = (str(atlas.folder), atlas.meta["created"], iou_threshold, auc_threshold)
        return self._indexes.get(key, lambda: TokenIndex(atlas_documents(atlas, iou_threshold, auc_threshold)))

    def notes_index(self, notes: Notes) -> TokenIndex:
        """The notes' index, read again only after a note was written (the version is read before the notes,
        so a note written meanwhile leaves the index a version behind, and the next search reads it)."""
        version = notes.version
        with self._lock:
            if self._notes is not None and self._notes[0] == version:
                return self._notes[1]
        found = TokenIndex([Document(model=n["model"], dataset=None, layer=n["layer"], kind=n["kind"], unit=n["unit"],
                                     field="note", text=n["text"], score=1.0, label=None, category=None,
                                     top_image=None, dictionary=n["dictionary"]) for n in notes.all()])
        with self._lock:
            self._notes = (version, found)
        return found


def rank(hits: Iterable[Document]) -> list[Document]:
    """One hit per unit (and dataset), its best field first; then by field, score (high first) and name, a
    layer's channels before its other kinds (a search for "block3:38" lists the channel before feature 38)."""
    best: dict[tuple, Document] = {}
    for hit in hits:
        key = (hit.model, hit.layer, hit.kind, hit.unit)
        current = best.get(key)
        if current is None or (FIELDS.index(hit.field), -hit.score) < (FIELDS.index(current.field), -current.score):
            best[key] = hit
    return sorted(best.values(), key=lambda d: (FIELDS.index(d.field), -d.score, d.model, d.layer,
                                                 d.kind != CHANNEL, d.kind, d.unit))
