"""Per-unit annotations: data about units that later jobs compute (a rendered feature visualisation, a
concept label, a description), each a named, versioned kind with one writer and one reader, stored beside a
model's atlases (app/atlas/layout.py) in one SQLite file per kind and version.

An annotation belongs to a scope: what it was computed from, so that it is never shown for something else.
A `weights` annotation (a feature visualisation) depends on the model's weights only and is keyed by their
checksum; an `atlas` annotation (a concept label) depends on an atlas too and is keyed by its dataset and
build. A `variant` tells apart what one unit can have several of (render settings, a facet). Bumping a kind's
version leaves the older file unread; a job that writes a unit's annotations writes them in one transaction,
so a job killed part-way resumes from the units it finished (`done`)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.atlas.kinds import CHANNEL
from app.atlas.layout import annotation_file
from app.atlas.sqlite_files import read_rows

_NAME = re.compile(r"[a-z][a-z0-9-]{0,40}")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS annotations (
    scope TEXT NOT NULL,     -- what it was computed from: the weights' checksum, or the atlas's dataset and build
    layer TEXT NOT NULL,
    kind TEXT NOT NULL,      -- of unit (app/atlas/kinds.py)
    unit INTEGER NOT NULL,
    variant TEXT NOT NULL,   -- '' when a unit has one
    value BLOB NOT NULL,
    PRIMARY KEY (scope, layer, kind, unit, variant)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class AnnotationKind:
    name: str  # lower-case letters, digits and dashes: it names the file
    version: int  # bumped when what is stored changes meaning or form
    description: str
    media_type: str  # of a value: "application/json", "image/png", ...
    scope: Literal["weights", "atlas"]

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name) or self.version < 1:
            raise ValueError(f"an annotation kind needs a name of lower-case letters, digits and dashes and a "
                             f"version from 1: {self.name!r} v{self.version}")


# Every kind, declared here in one place (as statistics.py declares the statistics): what the API serves. The
# job that computes a kind imports its declaration from here and writes it with `Annotations`.
# Version 2: ReLU6 gradients redirected too (EfficientNet-Lite units dead on the starting image now wake), a
# change the variant's settings do not name.
FEATURE_VISUALISATION = AnnotationKind(
    "feature-visualisation", 2, "an image optimised to drive the unit (activation maximisation; its settings "
    "are the variant, its reached activation is in the PNG's text)", "image/png", "weights")
ANNOTATION_KINDS: tuple[AnnotationKind, ...] = (FEATURE_VISUALISATION,)
KINDS: dict[str, AnnotationKind] = {kind.name: kind for kind in ANNOTATION_KINDS}


def scope_of(kind: AnnotationKind, weights_sha256: str, atlas_meta: dict | None) -> str:
    """What an annotation of `kind` was computed from: the weights, or the weights and one build of an atlas
    (a rebuilt atlas has a new `created` time, so labels of the old build are not shown for it)."""
    if kind.scope == "weights":
        return weights_sha256
    if atlas_meta is None:
        raise ValueError(f"annotation kind {kind.name!r} depends on an atlas")
    return f"{weights_sha256}/{atlas_meta['dataset']}@{atlas_meta['created']}"


@dataclass(frozen=True)
class Annotation:
    layer: str
    unit: int
    value: bytes
    variant: str = ""
    kind: str = CHANNEL


class Annotations:
    """One kind of annotation of one model's units: the writer (`write`) and the reader (`read`, `done`)."""

    def __init__(self, data_dir: Path, model_id: str, kind: AnnotationKind):
        self.kind = kind
        self.path = annotation_file(data_dir, model_id, kind.name, kind.version)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode = WAL")  # readers never wait for a job that writes
        db.executescript(_SCHEMA)
        return db

    def write(self, scope: str, annotations: Iterable[Annotation]) -> int:
        """Store `annotations` (replacing any of the same unit and variant) all at once, or none of them if
        the job dies part-way. Returns how many were written."""
        rows = [(scope, a.layer, a.kind, a.unit, a.variant, a.value) for a in annotations]
        db = self._connect()
        try:
            with db:
                db.executemany("INSERT OR REPLACE INTO annotations VALUES (?, ?, ?, ?, ?, ?)", rows)
        finally:
            db.close()
        return len(rows)

    def read(self, scope: str, layer: str, unit: int, variant: str = "", kind: str = CHANNEL) -> bytes | None:
        rows = self._query("SELECT value FROM annotations WHERE scope = ? AND layer = ? AND kind = ? AND unit = ? "
                           "AND variant = ?", (scope, layer, kind, unit, variant))
        return rows[0][0] if rows else None

    def done(self, scope: str, layer: str, variant: str = "", kind: str = CHANNEL) -> set[int]:
        """The units of `layer` that have this annotation: what a resumed job skips, and its progress."""
        return {row[0] for row in self._query("SELECT unit FROM annotations WHERE scope = ? AND layer = ? AND kind = ? "
                                              "AND variant = ?", (scope, layer, kind, variant))}

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        if not self.path.is_file():
            return []  # nothing computed yet: no file is made by reading
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return read_rows(db, sql, params)
        finally:
            db.close()
