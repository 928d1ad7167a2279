"""What the API says of dictionaries and of their features, for the units and dictionaries routes: a
dictionary's summary with its grid's page, and what only a feature has on its unit page (the channels that
compose it, its nearest features)."""

from __future__ import annotations

import shlex

import torch

from app.api.links import layer_page, unit_page
from app.atlas.dictionary_store import DictionaryRefused, DictionaryStore, StoredDictionary
from app.atlas.indexer import DEMO_DATASET
from app.atlas.kinds import CHANNEL
from app.atlas.reader import Atlas, AtlasLayer
from app.engine.dictionary import encode_maps
from app.store.store import LoadedModel

PER_LIST = 8  # channels in a composition, nearest features


def indexed_digests(atlas: Atlas) -> dict[tuple[str, str], str]:
    """(layer, kind) -> the digest of the dictionary whose features the atlas recorded."""
    return {(layer, kind): digest for layer, kind, digest in atlas.meta.get("dictionaries") or []}


def dictionary_json(model_id: str, stored: StoredDictionary, atlas: Atlas | None) -> dict:
    indexed = atlas is not None and indexed_digests(atlas).get((stored.layer, stored.kind)) == stored.digest
    dataset = atlas.dataset if atlas is not None else stored.meta["dataset"]
    return {**stored.summary(), "indexed": indexed, "page": layer_page(model_id, stored.layer, dataset, stored.kind)}


def dictionary_of(dictionaries: DictionaryStore, model: LoadedModel, atlas: Atlas, layer: str,
                  kind: str) -> StoredDictionary | None:
    """The dictionary whose features are units of `kind` at `layer` (None for channels), the very one the atlas
    indexed: 409 when it recorded another version (learned again since; the rebuild makes them agree)."""
    if kind == CHANNEL:
        return None
    stored = dictionaries.get(model, layer, kind)
    if indexed_digests(atlas).get((layer, kind)) != stored.digest:
        raise DictionaryRefused(f"the {atlas.dataset!r} atlas holds another version of dictionary {kind!r} than "
                                f"the one stored: rebuild it with `fovea index {model.id} --dataset "
                                f"{dataset_argument(atlas)}`",
                                layer=layer, kind=kind)
    return stored


def dataset_argument(atlas: Atlas) -> str:
    """What `fovea index --dataset` takes to rebuild this atlas: `demo`, or its folder (quoted for a shell)."""
    return DEMO_DATASET if atlas.dataset == DEMO_DATASET else shlex.quote(atlas.meta.get("dataset_root", atlas.dataset))


def unit_maps(stored: StoredDictionary | None, activations: torch.Tensor) -> torch.Tensor:
    """A layer's (c, h, w) output on one image as its units' maps: the channels, or the dictionary's features."""
    if stored is None:
        return activations
    return encode_maps(stored.on(activations.device), activations[None].float())[0]


def feature_json(model: LoadedModel, atlas: Atlas, layer: AtlasLayer, unit: int,
                 dictionaries: DictionaryStore) -> dict | None:
    """What the unit page shows of a feature; None for a channel."""
    stored = dictionary_of(dictionaries, model, atlas, layer.name, layer.kind)
    if stored is None:
        return None
    return {
        "dictionary": dictionary_json(model.id, stored, atlas),
        "composition": [{"unit": channel, "weight": weight, "page": unit_page(model.id, layer.name, channel,
                                                                               atlas.dataset)}
                        for channel, weight in stored.composition(unit, PER_LIST)],
        "nearest": [{"unit": other, "cosine": cosine, "page": unit_page(model.id, layer.name, other, atlas.dataset,
                                                                         layer.kind)}
                    for other, cosine in stored.nearest(unit, PER_LIST)],
    }
