"""Read-only access to a finished atlas: the SQLite catalog and the memory-mapped arrays."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from app.atlas.kinds import CHANNEL, KIND_DESCRIPTION, is_kind_name
from app.atlas.layout import catalog, layer_file
from app.atlas.statistics import UNIT_SORTS
from app.engine.probe import ReceptiveField
from app.errors import InvalidInput, LayerNotFound, NotFound, check_unit, did_you_mean


@dataclass(frozen=True)
class AtlasLayer:
    idx: int
    name: str
    kind: str  # of its units (app/atlas/kinds.py)
    type: str
    units: int
    height: int
    width: int


def read_meta(folder: Path) -> dict:
    """An atlas's metadata alone: what any atlas, of any format, can be asked before it is read (the registry
    reads an older one's only to know it is stale)."""
    db = sqlite3.connect(f"file:{catalog(folder)}?mode=ro", uri=True)
    try:
        return {key: json.loads(value) for key, value in db.execute("SELECT key, value FROM meta")}
    finally:
        db.close()


class Atlas:
    """A current atlas (app/atlas/registry.py `is_current`): an older one's tables may differ.

    A finished atlas never changes (a rebuild renames a new folder into place, and the registry opens a new
    Atlas), so each thread keeps its connection and the arrays stay open: a unit's page costs queries and
    slices, not file opens."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._threads = threading.local()  # each thread's connection (sqlite3's stay in their thread)
        self._arrays: dict[tuple[int, str], np.ndarray | dict[str, np.ndarray]] = {}
        self.meta = read_meta(folder)
        with self._connect() as db:
            indexed = [AtlasLayer(*row) for row in db.execute(
                "SELECT idx, name, kind, type, units, height, width FROM layers ORDER BY idx")]
        self.by_kind = {(layer.kind, layer.name): layer for layer in indexed}
        self.layers = {layer.name: layer for layer in indexed if layer.kind == CHANNEL}  # what pages name by layer
        self.dataset = self.meta["dataset"]
        self.model = self.meta["model"]
        self.dataset_root = Path(self.meta["dataset_root"])

    def _connect(self) -> sqlite3.Connection:
        """This thread's read-only connection (it holds no lock between queries)."""
        db = getattr(self._threads, "db", None)
        if db is None:
            db = self._threads.db = sqlite3.connect(f"file:{catalog(self.folder)}?mode=ro", uri=True)
            db.row_factory = sqlite3.Row
        return db

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        return self._connect().execute(sql, params).fetchall()

    def _array(self, layer: AtlasLayer, part: str) -> np.ndarray:
        """A layer's .npy file, memory-mapped once."""
        key = (layer.idx, part)
        if key not in self._arrays:  # two threads may both map it; either mapping serves
            self._arrays[key] = np.load(layer_file(self.folder, layer.idx, part), mmap_mode="r")
        return self._arrays[key]

    def _histograms(self, layer: AtlasLayer) -> dict[str, np.ndarray]:
        key = (layer.idx, "histogram.npz")
        if key not in self._arrays:  # small: a few numbers per unit, read whole once
            with np.load(layer_file(self.folder, layer.idx, "histogram.npz")) as data:
                self._arrays[key] = {name: data[name] for name in data.files}
        return self._arrays[key]

    def layer(self, name: str, kind: str = CHANNEL) -> AtlasLayer:
        if not is_kind_name(kind):
            raise InvalidInput(f"{kind!r} is not a kind of unit: {KIND_DESCRIPTION}", kind=kind)
        if kind != CHANNEL:
            if (kind, name) not in self.by_kind:
                kinds = self.kinds(name)
                raise LayerNotFound(f"layer {name!r} has no {kind} units in the {self.dataset!r} atlas of "
                                    f"{self.model!r}; its kinds: {', '.join(kinds) or 'none'}", layer=name,
                                    kind=kind, kinds=kinds)
            return self.by_kind[kind, name]
        if name not in self.layers:
            close, _ = did_you_mean(name, self.layers)
            raise LayerNotFound(
                f"layer {name!r} is not in the {self.dataset!r} atlas of {self.model!r}; indexed layers: "
                f"{', '.join(self.layers)}. To add it: `fovea index {self.model} --dataset {self.dataset_root} "
                f"--layers {' '.join(self.layers)} {name}` (its maps and CAMs on any image need no atlas: /image)",
                layer=name, indexed=list(self.layers), suggestions=close)
        return self.layers[name]

    def kinds(self, name: str) -> list[str]:
        """The kinds of unit indexed at a layer: its channels first, then its dictionaries by name."""
        return sorted((kind for kind, layer in self.by_kind if layer == name), key=lambda kind: (kind != CHANNEL, kind))

    def receptive_field(self, layer: AtlasLayer) -> ReceptiveField | None:
        """Where the layer's positions look, as computed when the atlas was built (None in older atlases)."""
        field = self.meta.get("receptive_fields", {}).get(layer.name)
        return None if field is None else ReceptiveField(
            field["method"], *(tuple(field[key]) for key in ("input_size", "map_size", "size", "corner")))

    def check_unit(self, layer: AtlasLayer, unit: int) -> None:
        check_unit(layer.name, unit, layer.units)

    def units(self, layer: AtlasLayer, sort: str = "unit", descending: bool = False, offset: int = 0,
              limit: int = 100) -> list[sqlite3.Row]:
        if sort not in UNIT_SORTS:
            raise InvalidInput(f"cannot sort by {sort!r}; choose one of {', '.join(UNIT_SORTS)}", sort=sort)
        direction = "DESC" if descending else "ASC"
        # `sort` is one of UNIT_SORTS, never raw user text, so it can be part of the SQL.
        return self.query(f"SELECT * FROM units WHERE layer = ? ORDER BY {sort} {direction}, unit ASC "
                           "LIMIT ? OFFSET ?", (layer.idx, limit, offset))

    def unit(self, layer: AtlasLayer, unit: int) -> sqlite3.Row:
        self.check_unit(layer, unit)
        return self.query("SELECT * FROM units WHERE layer = ? AND unit = ?", (layer.idx, unit))[0]

    def top_images(self, layer: AtlasLayer, unit: int) -> list[sqlite3.Row]:
        return self.query(
            "SELECT t.rank, t.image, t.value, t.y, t.x, i.path, i.label, i.prediction, i.confidence "
            "FROM topk t JOIN images i ON i.id = t.image WHERE t.layer = ? AND t.unit = ? ORDER BY t.rank",
            (layer.idx, unit))

    def similar(self, layer: AtlasLayer, unit: int) -> list[sqlite3.Row]:
        return self.query("SELECT other, correlation FROM similar WHERE layer = ? AND unit = ? ORDER BY rank",
                           (layer.idx, unit))

    def maps(self, layer: AtlasLayer, unit: int) -> np.ndarray:
        """The unit's activation map on each of its top-k images, (k, h, w) float16."""
        return self._array(layer, "maps.npy")[unit]

    def pooled(self, layer: AtlasLayer) -> np.ndarray:
        """(images, units) float16 spatial means of every dataset image, memory-mapped."""
        return self._array(layer, "pooled.npy")

    def top_maps(self, layer: AtlasLayer, units: list[int]) -> np.ndarray:
        """Each unit's map on its top image, (len(units), h, w) float16."""
        return self._array(layer, "maps.npy")[units, 0]

    def histogram(self, layer: AtlasLayer, unit: int) -> dict:
        """The unit's activation histogram over the range it occupies, with the exact count of zeros apart."""
        data = self._histograms(layer)
        used, zeros = int(data["used"][unit]), int(data["zeros"][unit])
        if used == 0:
            return {"edges": [0.0, 0.0], "counts": [0], "zeros": zeros}
        return {"edges": data["edges"][unit, :used + 1].tolist(), "counts": data["counts"][unit, :used].tolist(),
                "zeros": zeros}

    def class_histogram(self, rows: list[sqlite3.Row]) -> list[dict]:
        """How often each label occurs among the given top-k rows, most common first."""
        counts = Counter(row["label"] for row in rows if row["label"] is not None)
        return [{"label": label, "count": count} for label, count in counts.most_common()]

    def image(self, image_id: int) -> sqlite3.Row:
        rows = self.query("SELECT * FROM images WHERE id = ?", (image_id,))
        if not rows:
            raise NotFound(f"no image {image_id} in dataset {self.dataset!r}: valid ids are 0 to "
                           f"{self.meta['images'] - 1}", image=image_id, valid=[0, self.meta["images"] - 1])
        return rows[0]

    def samples(self, limit: int) -> list[sqlite3.Row]:
        """Images to start from: the first readable image of each class, classes in name order; every image
        of a dataset without classes is a group of its own (so its first images come)."""
        return self.query("SELECT MIN(id) AS id, label FROM images WHERE readable GROUP BY COALESCE(label, id) "
                           "ORDER BY label, id LIMIT ?", (limit,))

    def spread(self, count: int) -> list[int]:
        """Up to `count` readable image ids spread evenly over the dataset's file order."""
        rows = self.query("SELECT id FROM images WHERE readable ORDER BY id")
        step = max(len(rows) / max(count, 1), 1.0)
        return [rows[int(i * step)]["id"] for i in range(min(count, len(rows)))]

    def image_path(self, image_id: int) -> Path:
        """The file of a dataset image; the relative path comes from the catalog, never from a request."""
        return self.dataset_root / self.image(image_id)["path"]

    def load_image(self, image_id: int) -> Image.Image:
        """A dataset image decoded to RGB: 404 when its file is gone, 422 when it cannot be decoded."""
        path = self.image_path(image_id)
        try:
            with Image.open(path) as image:
                return image.convert("RGB")  # decodes now, while the file is open
        except FileNotFoundError:
            raise NotFound(f"image {image_id} of dataset {self.dataset!r} is gone from disk ({path.name})",
                           image=image_id) from None
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise InvalidInput(f"image {image_id} of dataset {self.dataset!r} cannot be decoded: {error}",
                               image=image_id) from None
