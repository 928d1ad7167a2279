"""Find the finished atlases under the data directory and keep them open, reopening one after a rebuild."""

from __future__ import annotations

import threading
from pathlib import Path

from app.atlas.build import build_progress
from app.atlas.reader import Atlas
from app.errors import AtlasMissing, NotFound

DEFAULT_DATASET = "demo"


class AtlasRegistry:
    def __init__(self, data_dir: Path):
        self.root = data_dir / "atlases"
        self.data_dir = data_dir
        self._open: dict[Path, tuple[tuple[int, int], Atlas]] = {}
        self._lock = threading.Lock()

    def datasets(self, model_id: str) -> list[str]:
        """Datasets with a finished atlas for this model, the default first, then the newest."""
        folder = self.root / model_id
        found = []
        for path in folder.iterdir() if folder.is_dir() else []:
            if path.name.startswith("."):
                continue  # builds, staging and replaced atlases in flight
            try:
                found.append((path.name != DEFAULT_DATASET, -(path / "atlas.sqlite").stat().st_mtime, path.name))
            except OSError:
                continue  # no catalog: not a finished atlas
        return [name for *_, name in sorted(found)]

    def get(self, model_id: str, dataset: str | None = None) -> Atlas:
        available = self.datasets(model_id)
        if dataset is None and available:
            dataset = available[0]
        if dataset is None or dataset not in available:
            raise self._missing(model_id, dataset, available)
        return self._opened(self.root / model_id / dataset)

    def for_dataset(self, dataset: str) -> Atlas:
        """Any atlas built on `dataset` (they share its images and ids)."""
        if self.root.is_dir():
            for model_folder in sorted(self.root.iterdir()):
                if (model_folder / dataset / "atlas.sqlite").is_file():
                    return self._opened(model_folder / dataset)
        raise NotFound(f"no atlas uses a dataset named {dataset!r}", dataset=dataset)

    def _opened(self, folder: Path) -> Atlas:
        stat = (folder / "atlas.sqlite").stat()
        version = (stat.st_ino, stat.st_mtime_ns)  # a rebuild swaps in a new file
        with self._lock:
            cached = self._open.get(folder)
            if cached is None or cached[0] != version:
                cached = (version, Atlas(folder))
                self._open[folder] = cached
            return cached[1]

    def _missing(self, model_id: str, dataset: str | None, available: list[str]) -> AtlasMissing:
        wanted = dataset or DEFAULT_DATASET
        progress = build_progress(self.data_dir, model_id, wanted)
        command = f"fovea index {model_id} --dataset {'demo' if wanted == DEFAULT_DATASET else 'PATH'}"
        if progress is not None:
            done, total = progress
            return AtlasMissing(f"the {wanted!r} atlas of {model_id!r} is being built ({done} of {total} images "
                                f"at the last checkpoint)", model=model_id, dataset=wanted, building=True,
                                done=done, total=total)
        listed = f"; atlases available: {', '.join(available)}" if available else ""
        return AtlasMissing(f"no {wanted!r} atlas for model {model_id!r} yet: run `{command}`{listed}",
                            model=model_id, dataset=wanted, command=command, available=available, building=False)
