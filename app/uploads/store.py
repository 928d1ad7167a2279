"""Uploaded images, content-addressed: the original bytes under `<data_dir>/uploads/<id[:2]>/<id>`, their
metadata in `<data_dir>/uploads/uploads.sqlite`. The same bytes always get the same id, so uploads are
deduplicated and a link to one keeps working across restarts. Files are written atomically before their
row, so a row never names a missing file; a file without a row (a crash in between) is simply written
again by the next upload of the same bytes.

An id is shared by everyone who uploads the same bytes, so the store keeps only what the bytes say (format,
size, ...), never an uploader's file name: the answer to an upload echoes its own, and nothing shows it."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from app.errors import NotFound
from app.files import atomic_write
from app.uploads.decode import decode_rgb, read_header

ID_LENGTH = 20  # hex digits of the SHA-256 of the bytes: 80 bits
UPLOAD_ID = re.compile(rf"[0-9a-f]{{{ID_LENGTH}}}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    format TEXT NOT NULL,
    mode TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    name TEXT NOT NULL,  -- always '' (an older version kept the first uploader's file name here)
    created REAL NOT NULL  -- when the bytes first came, for housekeeping; never shown
) WITHOUT ROWID
"""


@dataclass(frozen=True)
class Upload:
    """What the bytes behind an id say: the same for everyone who holds the id."""

    id: str
    sha256: str
    format: str
    mode: str  # as uploaded; every model sees RGB
    width: int  # upright, after the EXIF orientation
    height: int
    frames: int
    bytes: int

    def as_dict(self) -> dict:
        return asdict(self)


_COLUMNS = ", ".join(Upload.__dataclass_fields__)
_PLACES = ", ".join("?" * len(Upload.__dataclass_fields__))


class UploadStore:
    def __init__(self, folder: Path, max_bytes: int, max_pixels: int, max_decode_bytes: int | None = None,
                 decodes_at_once: int = 1):
        """`max_decode_bytes`: the most memory one decode may take (decode.decode_cost; None: no limit);
        `decodes_at_once`: decodes that may run at once, the others wait their turn."""
        self.folder, self.max_bytes, self.max_pixels = folder, max_bytes, max_pixels
        self.max_decode_bytes = max_decode_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one writer at a time; readers open their own connections
        self._decoding = threading.BoundedSemaphore(decodes_at_once)  # bounds the memory decodes take together
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")  # readers never wait for an upload being recorded
            db.execute(_SCHEMA)
            db.execute("UPDATE uploads SET name = '' WHERE name != ''")  # what an older version kept

    def add(self, data: bytes) -> tuple[Upload, bool]:
        """Store `data` if it is an acceptable image; returns the upload and whether it is new. Decoding
        fully before anything is written means nothing undecodable is ever stored."""
        header = read_header(data, self.max_bytes, self.max_pixels, self.max_decode_bytes)
        width, height = self._decode(data).size  # upright; the image itself is freed at once
        digest = hashlib.sha256(data).hexdigest()
        upload_id = digest[:ID_LENGTH]
        with self._lock:
            existing = self._row(upload_id)
            if existing is not None and self.path(upload_id).is_file():
                return existing, False
            atomic_write(self.path(upload_id), lambda tmp: tmp.write_bytes(data))
            upload = Upload(id=upload_id, sha256=digest, format=header.format, mode=header.mode,
                            width=width, height=height, frames=header.frames, bytes=len(data))
            with self._connect() as db:  # a row whose file was lost keeps its first `created`
                db.execute(f"INSERT OR REPLACE INTO uploads ({_COLUMNS}, name, created) VALUES ({_PLACES}, '', "
                           "COALESCE((SELECT created FROM uploads WHERE id = ?), ?))",
                           (*asdict(upload).values(), upload_id, time.time()))
            return upload, existing is None

    def get(self, upload_id: str) -> Upload:
        upload = self._row(upload_id) if UPLOAD_ID.fullmatch(upload_id) else None
        if upload is None:
            raise NotFound(f"no uploaded image {upload_id!r}", image=upload_id)
        return upload

    def path(self, upload_id: str) -> Path:
        """Only ever called with an id that matched UPLOAD_ID: no user string reaches the path unchecked."""
        if not UPLOAD_ID.fullmatch(upload_id):
            raise NotFound(f"no uploaded image {upload_id!r}", image=upload_id)
        return self.folder / upload_id[:2] / upload_id

    def data(self, upload_id: str) -> bytes:
        self.get(upload_id)
        try:
            return self.path(upload_id).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"uploaded image {upload_id!r} is gone from disk", image=upload_id) from None

    def image(self, upload_id: str) -> Image.Image:
        """The upright RGB image, by the same rules as at upload time."""
        return self._decode(self.data(upload_id))

    def _decode(self, data: bytes) -> Image.Image:
        with self._decoding:
            return decode_rgb(data, self.max_pixels, self.max_decode_bytes)

    def _row(self, upload_id: str) -> Upload | None:
        with self._connect() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        return Upload(*row) if row else None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for one transaction, closed after it (commit on success, rollback on error)."""
        db = sqlite3.connect(self.folder / "uploads.sqlite", timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()
