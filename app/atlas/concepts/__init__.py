"""Concept datasets: images whose pixels (or whole images) carry labels of named concepts, read from the
layouts Fovea knows. Each reader gives, per image, a region map and each region's concepts (what
`app/engine/dissection/signatures.py` turns into signatures); `open_concepts` finds the layout beside an
atlas's dataset folder. Layouts: the demo's scenes (`demo.py`), Broden's (`broden.py`) and Fovea's own
label maps (`label_maps.py`, documented in docs/concepts.md)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from app.atlas.concepts.base import Concept, ConceptSource, category_numbers
from app.atlas.concepts.broden import BrodenConcepts, is_broden
from app.atlas.concepts.demo import DemoConcepts, is_demo
from app.atlas.concepts.label_maps import LabelMapConcepts, is_label_maps

__all__ = ["Concept", "ConceptSource", "category_numbers", "concepts_of", "is_concept_folder", "open_concepts"]
_LAYOUTS = ((is_demo, DemoConcepts), (is_broden, BrodenConcepts), (is_label_maps, LabelMapConcepts))


def open_concepts(dataset_root: Path) -> ConceptSource | None:
    """The concept labels of the images under `dataset_root`, in whichever known layout sits beside it (in
    its parent folder, whose `images/` folder is the dataset), or None."""
    folder = Path(dataset_root).resolve().parent
    return next((reader(folder) for detect, reader in _LAYOUTS if detect(folder)), None)


def concepts_of(dataset_root: Path) -> ConceptSource | None:
    """`open_concepts`, kept while the layout's top-level files (scenes.jsonl, index.csv, concepts.csv, ...)
    are unchanged: serving a mask should not re-read a 2,000-line index."""
    folder = Path(dataset_root).resolve().parent
    try:
        stamp = tuple(sorted((entry.name, entry.stat().st_mtime_ns) for entry in os.scandir(folder) if entry.is_file()))
    except OSError:
        return None
    return _cached(Path(dataset_root).resolve(), stamp)


@functools.lru_cache(maxsize=8)
def _cached(dataset_root: Path, stamp: tuple) -> ConceptSource | None:
    return open_concepts(dataset_root)


def is_concept_folder(folder: Path) -> bool:
    """Whether `folder` holds concept labels beside an `images/` folder, in a known layout."""
    return any(detect(folder) for detect, _ in _LAYOUTS)
