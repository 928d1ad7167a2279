"""Notes: labels users write on units (Neuronpedia's explanations), beside the measured ones. One SQLite file
under the data directory, keyed by (model, layer, kind, unit); who wrote each and when. A note on a dictionary's
feature also keeps the dictionary's digest: a dictionary learned again under the same name numbers other
features, which must not inherit it. Text is stored as given (the front end escapes what it shows) and bounded
by the settings; a read-only deployment refuses writes before they get here (app/api/routers/notes.py)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from app.atlas.kinds import CHANNEL
from app.atlas.sqlite_files import read_rows

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY,
    model TEXT NOT NULL, layer TEXT NOT NULL, kind TEXT NOT NULL, unit INTEGER NOT NULL,
    text TEXT NOT NULL, author TEXT NOT NULL, created TEXT NOT NULL,
    dictionary TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS notes_by_unit ON notes (model, layer, kind, unit);
"""
_COLUMNS_SINCE = {"dictionary": "ALTER TABLE notes ADD COLUMN dictionary TEXT NOT NULL DEFAULT ''"}


class Notes:
    def __init__(self, data_dir: Path):
        self.path = data_dir / "notes.sqlite"
        self._lock = threading.Lock()
        self.version = 0  # bumped by every write: what a search index of the notes is keyed by

    def _connect(self, writing: bool = False) -> sqlite3.Connection:
        """A connection; for `writing`, to a file with the table and every column (a file from before gains those
        it lacks). Reads never change the file, and take a missing column as its default."""
        if writing:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        if not writing:
            return db
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(_SCHEMA)
        columns = {row["name"] for row in db.execute("PRAGMA table_info(notes)")}
        for column, added in _COLUMNS_SINCE.items():
            if column not in columns:
                try:
                    db.execute(added)
                except sqlite3.OperationalError as error:  # another connection added it first
                    if "duplicate column" not in str(error):
                        raise
        return db

    def add(self, model: str, layer: str, unit: int, text: str, author: str, kind: str = CHANNEL,
            dictionary: str = "") -> dict:
        """`dictionary`: the digest of the dictionary whose feature `unit` is; "" for a channel."""
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._lock:
            db = self._connect(writing=True)
            try:
                with db:
                    cursor = db.execute("INSERT INTO notes (model, layer, kind, unit, text, author, created, "
                                        "dictionary) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                        (model, layer, kind, unit, text, author, created, dictionary))
            finally:
                db.close()
            self.version += 1
        return {"id": cursor.lastrowid, "model": model, "layer": layer, "kind": kind, "unit": unit, "text": text,
                "author": author, "created": created, "dictionary": dictionary}

    def for_unit(self, model: str, layer: str, unit: int, kind: str = CHANNEL, dictionary: str = "") -> list[dict]:
        found = self._read("SELECT * FROM notes WHERE model = ? AND layer = ? AND kind = ? AND unit = ? ORDER BY id",
                           (model, layer, kind, unit))
        return [note for note in found if note["dictionary"] == dictionary]

    def all(self) -> list[dict]:
        return self._read("SELECT * FROM notes ORDER BY id", ())

    def _read(self, sql: str, params: tuple) -> list[dict]:
        if not self.path.is_file():
            return []
        db = self._connect()
        try:
            return [{"dictionary": "", **dict(row)} for row in read_rows(db, sql, params)]
        finally:
            db.close()
