"""Write a finished build as an atlas: a SQLite catalog plus .npy arrays, assembled in a staging folder
and renamed into place, so a reader sees the old atlas or the new one, never a mixture."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from app import __version__
from app.atlas.dissection import Dissection
from app.atlas.layout import catalog, layer_file
from app.atlas.recording import ImageRecord, IndexPlan, LayerRecorder
from app.atlas.schema import SCHEMA, SIMILAR_PER_UNIT
from app.atlas.statistics import REGION_QUANTILE, STATISTICS
from app.files import staged_dir

HISTOGRAM_BINS = 40  # as drawn on the unit page; the quantile is taken from the fine histogram first


def write_atlas(target: Path, plan: IndexPlan, recorders: dict[str, LayerRecorder], images: ImageRecord,
                seconds: float, dissection: Dissection | None = None) -> None:
    # Built in a staging folder renamed into place; one killed part-way leaves it behind, and the next
    # build of this atlas removes it (app/files.py).
    first_built = _first_built(target)
    with staged_dir(target) as staging:
        # Array files are written by a second thread (file writes release the GIL) while this one fills
        # the catalog.
        with sqlite3.connect(catalog(staging)) as db, ThreadPoolExecutor(1) as files:
            # No journal and no fsync: a half-written catalog is never seen, as the folder is renamed in whole.
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
            db.executescript(SCHEMA)
            _write_meta(db, plan, images, seconds, first_built, dissection)
            _write_images(db, plan, images)
            written = [_write_layer(db, files, staging, idx, recorder, images.readable)
                       for idx, recorder in enumerate(recorders.values())]
            if dissection is not None:
                _write_dissection(db, dissection, list(recorders))
            for future in (f for layer in written for f in layer):
                future.result()  # raises what the file thread raised
        db.close()


def _first_built(target: Path) -> str | None:
    """When the atlas this one replaces was first built: a rebuild keeps its place among a model's atlases."""
    try:
        with sqlite3.connect(f"file:{catalog(target)}?mode=ro", uri=True) as db:
            rows = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('first_built', 'created')"))
        db.close()
        return json.loads(rows.get("first_built") or rows["created"])
    except (sqlite3.Error, KeyError, ValueError):
        return None


def _write_meta(db: sqlite3.Connection, plan: IndexPlan, images: ImageRecord, seconds: float,
                first_built: str | None, dissection: Dissection | None) -> None:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    unreadable = [plan.dataset.files[i] for i in np.flatnonzero(~images.readable)]
    meta = {
        **plan.identity(),
        "model_name": plan.model.card.name,
        "dataset_root": str(plan.dataset.root),
        "images": len(plan.dataset),
        "readable": int(images.readable.sum()),
        "unreadable": len(unreadable),
        "unreadable_examples": unreadable[:20],
        "classes": plan.dataset.classes,
        "labels": plan.model.labels,
        "seconds": round(seconds, 3),
        "created": created,
        "first_built": first_built or created,  # orders a model's atlases (app/atlas/registry.py)
        "fovea_version": __version__,
        "region_quantile": REGION_QUANTILE,
        "statistics": [statistic.name for statistic in STATISTICS],  # an atlas without one is rebuilt
        # Where each layer's positions look, kept here so that a unit page never computes it under the
        # model's lock, behind whatever request holds the model.
        "receptive_fields": {name: asdict(plan.model.receptive_field(name)) for name in
                             dict.fromkeys([info.name for info in plan.layers] + [d.layer for d in plan.dictionaries])},
        "dissection": dissection.meta() if dissection else None,
        "dissection_seconds": round(dissection.seconds, 3) if dissection else None,
    }
    db.executemany("INSERT INTO meta VALUES (?, ?)", [(key, json.dumps(value)) for key, value in meta.items()])


def _write_images(db: sqlite3.Connection, plan: IndexPlan, images: ImageRecord) -> None:
    rows = (
        (i, path, label, int(images.readable[i]),
         int(images.prediction[i]) if images.readable[i] else None,
         float(images.confidence[i]) if images.readable[i] else None)
        for i, (path, label) in enumerate(zip(plan.dataset.files, plan.dataset.labels))
    )
    db.executemany("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?)", rows)


def _write_layer(db: sqlite3.Connection, files: Executor, folder: Path, idx: int, recorder: LayerRecorder,
                 readable: np.ndarray) -> list[Future]:
    """Insert the layer's rows; its array files are left to `files`, whose futures are returned."""
    info = recorder.info
    units, height, width = info.shape
    db.execute("INSERT INTO layers (idx, name, kind, type, units, height, width) VALUES (?, ?, ?, ?, ?, ?, ?)",
               (idx, info.name, recorder.kind, info.type, units, height, width))
    finished = recorder.finished()
    topk = finished.topk
    written = [files.submit(np.save, layer_file(folder, idx, "maps.npy"), topk["maps"]),
               files.submit(np.savez, layer_file(folder, idx, "histogram.npz"),
                            **recorder.histogram.coarse(HISTOGRAM_BINS)),
               files.submit(shutil.copyfile, recorder.pooled.filename, layer_file(folder, idx, "pooled.npy"))]
    statistics = [np.asarray(statistic.compute(finished), dtype=np.float64 if statistic.sql_type == "REAL" else None)
                  for statistic in STATISTICS]
    dead = finished.summary["fraction_active"] == 0
    top_image = [i if i >= 0 else None for i in topk["image_ids"][:, 0].tolist()]
    _insert_columns(db, "units", [np.full(units, idx), np.arange(units), *statistics, dead, top_image])
    unit, rank = np.nonzero(topk["image_ids"] >= 0)  # a unit has fewer than k entries on a tiny dataset
    positions = topk["positions"][unit, rank]
    _insert_columns(db, "topk", [np.full(len(unit), idx), unit, rank, topk["image_ids"][unit, rank],
                                 topk["values"][unit, rank], positions // width, positions % width])
    _insert_columns(db, "similar", similar_units(recorder.pooled, readable, idx, SIMILAR_PER_UNIT))
    return written


def _write_dissection(db: sqlite3.Connection, dissection: Dissection, layers: list[str]) -> None:
    db.executemany("INSERT INTO concepts VALUES (?, ?, ?, ?, ?, ?)",
                   [(i, c.id, c.name, c.category, int(pixels), int(images)) for i, (c, pixels, images)
                    in enumerate(zip(dissection.concepts, dissection.concept_pixels, dissection.concept_images))])
    for idx, name in enumerate(layers):
        labels = dissection.layers[name]
        units = len(labels.thresholds)
        if labels.concepts is not None:
            concepts, ious = labels.concepts
            unit, rank = np.nonzero(np.ones_like(concepts, dtype=bool))
            _insert_columns(db, "unit_concepts", [np.full(len(unit), idx), unit, rank, concepts[unit, rank],
                                                  ious[unit, rank]])
            formulas = labels.formulas
            _insert_columns(db, "unit_dissection", [
                np.full(units, idx), np.arange(units), labels.thresholds, labels.region_pixels,
                [f[0] if f else None for f in formulas], [f[1] if f else None for f in formulas]])
        if labels.classes is not None:
            classes, aucs = labels.classes
            unit, rank = np.nonzero(~np.isnan(aucs))
            _insert_columns(db, "unit_classes", [np.full(len(unit), idx), unit, rank, classes[unit, rank].tolist(),
                                                 aucs[unit, rank]])


def _insert_columns(db: sqlite3.Connection, table: str, columns: list[np.ndarray]) -> None:
    """Insert rows given column by column (numpy values become plain Python ones through tolist())."""
    placeholders = ", ".join("?" * len(columns))
    db.executemany(f"INSERT INTO {table} VALUES ({placeholders})", zip(*(np.asarray(c).tolist() for c in columns)))


def similar_units(pooled: np.ndarray, readable: np.ndarray, layer: int, per_unit: int,
                  rows_per_chunk: int = 4096) -> list[np.ndarray]:
    """Per unit, the `per_unit` units of the same layer whose pooled activations correlate best
    (Pearson r over the readable images; ties to the lower unit), in two passes over row chunks so memory
    stays O(units^2). Columns (layer, unit, rank, other, r) of the `similar` table."""
    rows = np.flatnonzero(readable)
    units = pooled.shape[1]
    chunks = [rows[start:start + rows_per_chunk] for start in range(0, len(rows), rows_per_chunk)]
    mean = sum((np.asarray(pooled[chunk], dtype=np.float64).sum(0) for chunk in chunks), np.zeros(units))
    mean /= max(len(rows), 1)
    covariance = np.zeros((units, units))
    for chunk in chunks:  # centred, so a constant unit has exactly zero variance
        centred = np.asarray(pooled[chunk], dtype=np.float64) - mean
        covariance += centred.T @ centred
    std = np.sqrt(np.diag(covariance))
    alive = std > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        correlation = np.clip(covariance / np.outer(std, std), -1.0, 1.0)
    valid = np.outer(alive, alive)
    np.fill_diagonal(valid, False)
    unit, other = _best_per_row(np.where(valid, -correlation, np.inf), per_unit)
    keep = valid[unit, other]
    unit, other = unit[keep], other[keep]
    rank = np.arange(len(unit)) - np.searchsorted(unit, unit)  # position within each unit's run
    return [np.full(len(unit), layer), unit, rank, other, correlation[unit, other]]


def _best_per_row(keys: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the `count` smallest keys of each row, ties to the lower column, ordered row by
    row and then as a stable sort would: what argsort(kind="stable")[:, :count] picks, without sorting
    whole rows (a 2,048-unit layer has 4 million pairs)."""
    count = min(count, keys.shape[1])
    if count == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    kth = np.partition(keys, count - 1, axis=1)[:, count - 1:count]
    below = keys < kth
    # Of the keys equal to the boundary value, the lowest columns fill the remaining places.
    tied = (keys == kth) & (np.cumsum(keys == kth, axis=1) <= count - below.sum(axis=1, keepdims=True))
    rows, columns = np.nonzero(below | tied)
    order = np.lexsort((columns, keys[rows, columns], rows))
    return rows[order], columns[order]
