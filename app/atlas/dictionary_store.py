"""Stored dictionaries (app/atlas/dictionaries.py learns them): one safetensors file per dictionary beside the
model's atlases, with its JSON metadata (the request, the weights it fits, its figures, a digest of its numbers);
read once per file version, checked against the model as it is loaded, and moved to each device once."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from app.atlas.kinds import CHANNEL, is_kind_name
from app.atlas.layout import dictionaries_dir, dictionary_file
from app.engine.dictionary import METHODS, Dictionary, from_tensors
from app.errors import FoveaError, NotFound
from app.files import atomic_write
from app.store.store import LoadedModel

log = logging.getLogger(__name__)

FORMAT = 1  # of the stored file


class DictionaryRefused(FoveaError):
    """A stored dictionary that does not fit the model as it is loaded (other weights)."""

    status_code = 409
    code = "dictionary_refused"


@dataclass(frozen=True)
class StoredDictionary:
    model: str
    layer: str
    kind: str
    meta: dict  # the request, weights, dataset, figures, seconds, digest
    dictionary: Dictionary
    _on: dict = field(default_factory=dict, compare=False, repr=False)  # device -> the dictionary there

    @property
    def digest(self) -> str:
        return self.meta["digest"]

    def on(self, device: torch.device | str) -> Dictionary:
        """The dictionary on `device`, moved (and for NMF, its solver's matrices made) once per device."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # "cuda" and "cuda:0" are one copy, not two
            device = torch.device("cuda", torch.cuda.current_device())
        key = str(device)
        if key not in self._on:
            self._on[key] = self.dictionary.to(device)
        return self._on[key]

    def composition(self, feature: int, count: int) -> list[tuple[int, float]]:
        """(channel, weight) of the `count` largest weights by magnitude in the feature's unit direction."""
        row = self.dictionary.directions()[feature].detach().float().cpu()
        order = torch.argsort(row.abs(), descending=True, stable=True)[:count]
        return [(int(c), float(row[c])) for c in order]

    def nearest(self, feature: int, count: int) -> list[tuple[int, float]]:
        """(feature, cosine) of the `count` other features whose directions are closest to this one's."""
        directions = torch.nn.functional.normalize(self.dictionary.directions().detach().float().cpu(), dim=1)
        cosines = directions @ directions[feature]
        cosines[feature] = -float("inf")
        order = torch.argsort(cosines, descending=True, stable=True)[:count]
        return [(int(f), float(cosines[f])) for f in order if torch.isfinite(cosines[f])]

    def summary(self) -> dict:
        """What the API and the atlas say of it."""
        keys = ("method", "size", "sparsity", "steps", "dataset", "figures", "seconds", "digest", "created")
        return {"layer": self.layer, "kind": self.kind, "channels": self.dictionary.channels,
                **{key: self.meta.get(key) for key in keys}}


def digest_of(dictionary: Dictionary) -> str:
    """A short checksum of the dictionary's numbers: what an atlas records of the dictionary it indexed."""
    hasher = hashlib.sha256()
    for key, tensor in sorted(dictionary.tensors().items()):
        hasher.update(key.encode())
        hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()[:16]


def save_dictionary(data_dir: Path, model_id: str, dictionary: Dictionary, meta: dict) -> StoredDictionary:
    meta = {**meta, "digest": digest_of(dictionary)}
    tensors = {key: value.detach().cpu().contiguous() for key, value in dictionary.tensors().items()}
    path = dictionary_file(data_dir, model_id, meta["layer"], meta["kind"])
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"fovea": json.dumps(meta)}))
    return StoredDictionary(model_id, meta["layer"], meta["kind"], meta, dictionary)


def read_dictionary(path: Path) -> StoredDictionary:
    """A stored dictionary: safetensors (plain numbers, nothing executed) and its JSON metadata, which must name
    the file it is in (a copied or renamed file would make two units of one kind)."""
    with safe_open(path, framework="pt") as opened:
        meta = json.loads((opened.metadata() or {})["fovea"])
        tensors = {key: opened.get_tensor(key) for key in opened.keys()}
    if meta.get("format") != FORMAT or meta.get("method") not in METHODS:
        raise ValueError(f"not a dictionary of this Fovea (format {meta.get('format')}, method {meta.get('method')})")
    named = dictionary_file(Path("."), meta["model"], meta["layer"], meta["kind"]).name  # ValueError: no file name
    if not is_kind_name(str(meta["kind"])) or named != path.name or meta["model"] != path.parent.parent.name:
        raise ValueError(f"its metadata names {meta['model']!r}, layer {meta['layer']!r} and kind {meta['kind']!r}, "
                         "not this file")
    return StoredDictionary(meta["model"], meta["layer"], meta["kind"], meta, from_tensors(meta["method"], tensors))


# What reading a damaged or foreign file raises: it is skipped (logged), never a failed request or build.
DICTIONARY_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, SafetensorError)


class DictionaryStore:
    """The dictionaries stored for each model, read once per file version."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._read: dict[Path, tuple[tuple[int, int], StoredDictionary | None]] = {}
        self._refused: set[Path] = set()  # logged once

    def of_model(self, model: LoadedModel) -> list[StoredDictionary]:
        """The model's usable dictionaries, by layer then kind; one learned on other weights is skipped (and
        logged once per file version)."""
        usable = []
        folder = dictionaries_dir(self.data_dir, model.id)
        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            stored = self._load(path)
            if stored is None:
                continue
            problem = self._misfit(model, stored)
            if problem is not None:
                if path not in self._refused:
                    log.warning("dictionary %s of %s skipped: %s", path.name, model.id, problem)
                    self._refused.add(path)
                continue
            usable.append(stored)
        return usable

    def get(self, model: LoadedModel, layer: str, kind: str) -> StoredDictionary:
        try:
            path = dictionary_file(self.data_dir, model.id, layer, kind)
        except ValueError:  # a module name that names no file has no dictionary
            path = None
        stored = self._load(path) if path is not None and path.is_file() else None
        if stored is None:
            raise NotFound(f"no dictionary {kind!r} of layer {layer!r} for model {model.id!r}: learn one with "
                           f"`fovea dictionary {model.id} --layer {layer}`", layer=layer, kind=kind)
        problem = self._misfit(model, stored)
        if problem is not None:
            meta = stored.meta
            raise DictionaryRefused(f"dictionary {kind!r} of {layer!r} does not fit {model.id!r}: {problem}; learn it "
                                    f"again with `fovea dictionary {model.id} --layer {layer} --method "
                                    f"{meta['method']} --size {meta['size']} --name {kind} --replace` on the dataset "
                                    f"it was learned on ({meta.get('dataset')!r})",
                                    layer=layer, kind=kind)
        return stored

    @staticmethod
    def _misfit(model: LoadedModel, stored: StoredDictionary) -> str | None:
        """Why a stored dictionary cannot serve the model as loaded; None when it can."""
        if stored.meta.get("weights") != model.weights_id:
            return "it was learned on other weights"
        info = next((layer for layer in model.layers if layer.name == stored.layer), None)
        if info is None or info.shape[0] != stored.dictionary.channels:
            return f"the model has no layer {stored.layer!r} of {stored.dictionary.channels} channels"
        return None

    def _load(self, path: Path) -> StoredDictionary | None:
        stat = path.stat()
        version = (stat.st_ino, stat.st_mtime_ns)
        cached = self._read.get(path)
        if cached is None or cached[0] != version:
            try:
                stored = read_dictionary(path)
            except DICTIONARY_READ_ERRORS as problem:
                log.warning("dictionary %s unreadable, skipped: %s", path.name, problem)
                stored = None
            cached = (version, stored)
            self._read[path] = cached
        return cached[1]


def layer_key(layer: str, kind: str) -> str:
    """A recorder's key in an index pass: the layer's name for its channels, `layer#kind` for another kind."""
    return layer if kind == CHANNEL else f"{layer}#{kind}"

