"""Reading the SQLite files that jobs and users write beside the atlases (annotations, notes)."""

from __future__ import annotations

import sqlite3


def read_rows(db: sqlite3.Connection, sql: str, params: tuple) -> list:
    """The query's rows; none where the file's first writer has made it and not yet its tables (a reader in
    that moment got "no such table", a 500). Any other failure is raised."""
    try:
        return db.execute(sql, params).fetchall()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return []
        raise
