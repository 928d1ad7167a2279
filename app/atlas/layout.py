"""Where an atlas's files live, in one place. Under the data directory:

    atlases/{model}/{dataset}/               a finished atlas (renamed into place whole)
        atlas.sqlite                         the catalog (app/atlas/schema.py)
        layer-{idx:03d}.maps.npy             per layer: each unit's maps on its top-k images
        layer-{idx:03d}.histogram.npz        per layer: each unit's activation histogram
        layer-{idx:03d}.pooled.npy           per layer: every image's spatial mean per unit
    atlases/{model}/.{dataset}.build/        an unfinished build: its checkpoint (app/atlas/build.py), and per
                                             layer its arrays so far, with `layer-{idx:03d}.peaks.npy` (each
                                             image's spatial maxima, for class selectivity) kept only there
    atlases/{model}/.{dataset}.lock          held while a build writes the atlas (app/files.py)
    atlases/{model}/.annotations/{name}.v{version}.sqlite
                                             per-unit annotations of one kind (app/atlas/annotations.py)
    atlases/{model}/.dictionaries/{layer}.{kind}.safetensors
                                             a dictionary of a layer, a kind of unit (app/atlas/dictionaries.py),
                                             and `.{layer}.{kind}.build/` while it is learned

Model ids and dataset names are checked before they get here (app/atlas/datasets.py `is_dataset_name`, the
model store's ids); layer file names come from the catalog's own index, and annotation file names from
declared kinds, never from a request."""

from __future__ import annotations

import re
from pathlib import Path

CATALOG = "atlas.sqlite"
LAYER_PARTS = ("maps.npy", "histogram.npz", "pooled.npy")
BUILD_PARTS = ("peaks.npy",)  # in a build's folder only


def atlases_root(data_dir: Path) -> Path:
    return data_dir / "atlases"


def model_atlases(data_dir: Path, model_id: str) -> Path:
    return atlases_root(data_dir) / model_id


def atlas_dir(data_dir: Path, model_id: str, dataset_name: str) -> Path:
    return model_atlases(data_dir, model_id) / dataset_name


def build_dir(data_dir: Path, model_id: str, dataset_name: str) -> Path:
    """Where an unfinished build keeps its checkpoint and partial arrays (hidden beside the atlas)."""
    return model_atlases(data_dir, model_id) / f".{dataset_name}.build"


def annotation_file(data_dir: Path, model_id: str, name: str, version: int) -> Path:
    return model_atlases(data_dir, model_id) / ".annotations" / f"{name}.v{version}.sqlite"


def is_hidden(folder: Path) -> bool:
    """Builds, staging folders and replaced atlases in flight: never read as atlases."""
    return folder.name.startswith(".")


def catalog(folder: Path) -> Path:
    return folder / CATALOG


def layer_file(folder: Path, idx: int, part: str) -> Path:
    """One of a layer's array files (`part` one of LAYER_PARTS, or BUILD_PARTS in a build's folder), named by
    the layer's index in the catalog."""
    if part not in LAYER_PARTS + BUILD_PARTS:
        raise ValueError(f"unknown layer file {part!r}")
    return folder / f"layer-{idx:03d}.{part}"


def dictionaries_dir(data_dir: Path, model_id: str) -> Path:
    return model_atlases(data_dir, model_id) / ".dictionaries"


def dictionary_file(data_dir: Path, model_id: str, layer: str, kind: str) -> Path:
    """A stored dictionary (app/atlas/dictionaries.py). `layer` is one of the model's own module names and
    `kind` a checked kind name (app/atlas/kinds.py), never raw request text."""
    return dictionaries_dir(data_dir, model_id) / f"{_file_part(layer)}.{_file_part(kind)}.safetensors"


def dictionary_build_dir(data_dir: Path, model_id: str, layer: str, kind: str) -> Path:
    """An unfinished dictionary's sampled vectors and training checkpoint."""
    return dictionaries_dir(data_dir, model_id) / f".{_file_part(layer)}.{_file_part(kind)}.build"


def _file_part(name: str) -> str:
    """A module or kind name as part of a file name: PyTorch forbids only dots and empty names in a module's
    own name, so a model could name one `a/b`; such a name is refused rather than made a folder."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", name):
        raise ValueError(f"{name!r} cannot be part of a file name")
    return name
