"""Find the finished atlases under the data directory and keep them open, reopening one after a rebuild."""

from __future__ import annotations

import threading
from pathlib import Path

from app.atlas.build import build_progress
from app.atlas.datasets import is_dataset_name
from app.atlas.layout import atlases_root, catalog, is_hidden
from app.atlas.reader import Atlas, read_meta
from app.atlas.schema import ATLAS_FORMAT
from app.atlas.statistics import STATISTICS
from app.errors import AtlasMissing, NotFound

DEFAULT_DATASET = "demo"


def is_current(meta: dict) -> bool:
    """Whether an atlas is readable as it is: of this format, and holding every declared statistic (a new one
    makes older atlases stale, as a new format does, so no reader asks a catalog for a column it lacks)."""
    return meta.get("format") == ATLAS_FORMAT and meta.get("statistics") == [s.name for s in STATISTICS]


class AtlasRegistry:
    def __init__(self, data_dir: Path):
        self.root = atlases_root(data_dir)
        self.data_dir = data_dir
        # Per folder, for the catalog file it has now: its metadata, and the Atlas once a current one is read.
        self._open: dict[Path, tuple[tuple[int, int], dict, Atlas | None]] = {}
        self._lock = threading.Lock()

    def datasets(self, model_id: str) -> list[str]:
        """Datasets with a finished atlas for this model: the demo first, then in the order they were first
        built. The first is what a link that names no dataset shows, so indexing another dataset later never
        changes what an old link shows."""
        return self._scan(model_id)[0]

    def _scan(self, model_id: str) -> tuple[list[str], set[str]]:
        """(datasets with a current atlas (`is_current`), as `datasets` orders them; datasets whose atlas is
        of an older format or lacks a statistic)."""
        folder = self.root / model_id
        found, stale = [], set()
        for path in folder.iterdir() if folder.is_dir() else []:
            if is_hidden(path):
                continue
            if not catalog(path).is_file():
                continue  # no catalog: not a finished atlas
            meta = self._meta(path)
            if is_current(meta):
                found.append((path.name != DEFAULT_DATASET, meta.get("first_built", meta["created"]), path.name))
            else:
                stale.add(path.name)  # read by no one until it is rebuilt
        return [name for *_, name in sorted(found)], stale

    def get(self, model_id: str, dataset: str | None = None) -> Atlas:
        if dataset is not None and not is_dataset_name(dataset):  # it would never reach a path
            raise NotFound(f"no dataset named {dataset!r}: dataset names are lowercase letters, digits and "
                           f"dashes", dataset=dataset)
        available, stale = self._scan(model_id)
        if dataset is None and available:
            dataset = available[0]
        if dataset is None or dataset not in available:
            raise self._missing(model_id, dataset, available, stale)
        return self._opened(self.root / model_id / dataset)

    def for_dataset(self, dataset: str) -> Atlas:
        """Any atlas built on `dataset` (they share its images and ids)."""
        if is_dataset_name(dataset) and self.root.is_dir():
            for model_folder in sorted(self.root.iterdir()):
                if dataset in self.datasets(model_folder.name):
                    return self._opened(model_folder / dataset)
        raise NotFound(f"no atlas uses a dataset named {dataset!r}", dataset=dataset)

    def models_with(self, dataset: str) -> list[str]:
        """The models with a finished atlas on `dataset`, by id."""
        if not (is_dataset_name(dataset) and self.root.is_dir()):
            return []
        return [folder.name for folder in sorted(self.root.iterdir()) if dataset in self.datasets(folder.name)]

    def _meta(self, folder: Path) -> dict:
        return self._cached(folder, read=False)[0]

    def _opened(self, folder: Path) -> Atlas:
        """The Atlas of a folder that `_scan` found current."""
        return self._cached(folder, read=True)[1]

    def _cached(self, folder: Path, read: bool) -> tuple[dict, Atlas | None]:
        stat = catalog(folder).stat()
        version = (stat.st_ino, stat.st_mtime_ns)  # a rebuild swaps in a new file
        with self._lock:
            cached = self._open.get(folder)
            if cached is None or cached[0] != version:
                cached = (version, read_meta(folder), None)
            if read and cached[2] is None:
                cached = (version, cached[1], Atlas(folder))
            self._open[folder] = cached
            return cached[1], cached[2]

    def _missing(self, model_id: str, dataset: str | None, available: list[str], stale: set[str]) -> AtlasMissing:
        wanted = dataset or DEFAULT_DATASET
        progress = build_progress(self.data_dir, model_id, wanted)
        command = f"fovea index {model_id} --dataset {'demo' if wanted == DEFAULT_DATASET else 'PATH'}"
        # A link that named no dataset, for a model with no atlas: the demo's shapes suit only the demo models.
        choices = f"`{command}` (the demo's shapes) or `fovea index {model_id} --dataset PATH` (a folder of your " \
                  "images)" if dataset is None and not available else f"`{command}`"
        if progress is not None:
            done, total = progress
            return AtlasMissing(f"the {wanted!r} atlas of {model_id!r} is being built ({done} of {total} images "
                                f"at the last checkpoint)", model=model_id, dataset=wanted, building=True,
                                done=done, total=total)
        listed = f"; atlases available: {', '.join(available)}" if available else ""
        problem = "was built by an older Fovea" if wanted in stale else "does not exist yet"
        return AtlasMissing(f"the {wanted!r} atlas of model {model_id!r} {problem}: run {choices}{listed}",
                            model=model_id, dataset=wanted, command=command, available=available, building=False)
