"""`GET /api/search`: units of every model found by what is known of them (app/atlas/search.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import AtlasesDep, NotesDep, SearchDep, SettingsDep, StoreDep
from app.api.encoding import FastJSONResponse
from app.api.errors import ErrorResponse
from app.api.features import indexed_digests
from app.api.links import unit_page
from app.api.schemas import SearchPage
from app.atlas.kinds import CHANNEL
from app.atlas.search import Document, rank, tokens
from app.errors import InvalidInput

router = APIRouter(prefix="/api", tags=["search"])
MAX_WORDS = 12


@router.get("/search", response_model=SearchPage,
            responses={404: {"model": ErrorResponse, "description": "Unknown model."},
                       422: {"model": ErrorResponse, "description": "No words and no filter, or too many words."}},
            summary="Find units by label, compositional label, class, description, note or name")
def search(
    store: StoreDep, registry: AtlasesDep, index: SearchDep, notes: NotesDep, settings: SettingsDep,
    q: Annotated[str, Query(max_length=200, description="Words, each matched as a prefix (`squ` finds `square`); "
                                                        "all must match.")] = "",
    model: Annotated[str | None, Query(max_length=100, description="Only this model's units.")] = None,
    dataset: Annotated[str | None, Query(max_length=100, description=(
        "Only what this dataset's atlases say of units (and notes, which belong to the unit)."))] = None,
    layer: Annotated[str | None, Query(max_length=200, description="Only this layer's units.")] = None,
    kind: Annotated[str | None, Query(max_length=40, description="Only units of this kind: `channel`, or a "
                                                                 "dictionary's name (its features).")] = None,
    category: Annotated[str | None, Query(max_length=100, description="Only units labelled with a concept of "
                                                                      "this category, e.g. `shape`.")] = None,
    concept: Annotated[str | None, Query(max_length=200, description="Only units labelled with this concept, "
                                                                     "e.g. `shape:square`.")] = None,
    selects: Annotated[str | None, Query(alias="class", max_length=200, description=(
        "Only units that select this class: their most selective class, where its ROC AUC reaches the "
        "selectivity_auc_threshold setting, e.g. `horse`."))] = None,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> FastJSONResponse:
    words = tokens(q)
    if not words and not (category or concept or selects):
        raise InvalidInput("a search needs a word (letters or digits), or a category, concept or class filter", q=q)
    if len(words) > MAX_WORDS:
        raise InvalidInput(f"at most {MAX_WORDS} words in a search; got {len(words)}", words=len(words))
    models = [store.get(model)] if model is not None else list(store)
    hits: list[Document] = []
    for loaded in (m for m in models if m.ready):
        for name in (n for n in registry.datasets(loaded.id) if dataset in (None, n)):
            found = index.index(registry.get(loaded.id, name), settings.dissection_iou_threshold,
                                settings.selectivity_auc_threshold)
            matched = found.match(words) if words else range(len(found.documents))
            hits += [found.documents[i] for i in matched]
    note_index = index.notes_index(notes)
    noted = [note_index.documents[i] for i in note_index.match(words)] if words else []
    shown_on = {note: _note_datasets(registry, note) for note in noted}
    hits += [note for note in noted if note.kind == CHANNEL or shown_on[note]]
    hits = [h for h in hits if (model is None or h.model == model) and (layer is None or h.layer == layer)
            and (kind is None or h.kind == kind)
            and (category is None or h.category == category) and (concept is None or h.label == concept)
            and (selects is None or h.selects == selects) and (words or _filtered_field(h, category, concept))]
    ranked = rank(hits)
    return FastJSONResponse({"query": q, "total": len(ranked), "offset": offset, "limit": limit,
                             "results": [_result(registry, hit, dataset, shown_on.get(hit, []))
                                         for hit in ranked[offset:offset + limit]]})


def _filtered_field(hit: Document, category: str | None, concept: str | None) -> bool:
    """With filters alone, each unit is listed by what they filter on: its label, or else the class it selects."""
    if category or concept:
        return hit.field == "label"
    return hit.field == "class" and hit.text.endswith(f"class {hit.selects}")  # "class X" or "predicted class X"


def _note_datasets(registry, note: Document) -> list[str]:
    """The datasets whose atlases show a note's unit: any of the model's for a channel; for a feature, those that
    indexed the very dictionary it was written on (a dictionary learned again numbers other features)."""
    datasets = registry.datasets(note.model)
    if note.kind == CHANNEL:
        return datasets
    return [name for name in datasets
            if indexed_digests(registry.get(note.model, name)).get((note.layer, note.kind)) == note.dictionary]


def _result(registry, hit: Document, asked_dataset: str | None, note_datasets: list[str]) -> dict:
    """`note_datasets`: for a note, the datasets whose atlases show its unit (_note_datasets)."""
    dataset = hit.dataset
    if dataset is None:  # a note: shown on the atlas of the dataset asked for, else on the model's default one
        dataset = asked_dataset if asked_dataset in note_datasets else note_datasets[0] if note_datasets else None
    top_image = hit.top_image
    if top_image is None and dataset is not None:  # a note: the unit's top image on that atlas
        indexed = registry.get(hit.model, dataset).layers.get(hit.layer)
        if indexed is not None and hit.unit < indexed.units:
            top_image = registry.get(hit.model, dataset).unit(indexed, hit.unit)["top_image"]
    image = f"/api/datasets/{dataset}/images/{top_image}?model={hit.model}" if top_image is not None else None
    return {"model": hit.model, "dataset": hit.dataset, "layer": hit.layer, "kind": hit.kind, "unit": hit.unit,
            "field": hit.field, "text": hit.text, "score": hit.score, "label": hit.label,
            "page": unit_page(hit.model, hit.layer, hit.unit, dataset or "demo", hit.kind), "image": image}
